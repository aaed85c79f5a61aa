"""`watch --listen HOST:PORT` (and `--metrics-port PORT`, its loopback alias), and the
container reachable from outside: built and checked when a container engine is here."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.cli import build_parser
from reconciler.emulator import Emulator
from tests.test_watch import Daemon, daemons, root, running, wait_for

__all__ = ["daemons", "root"]  # fixtures used below

ROOT = Path(__file__).resolve().parent.parent


def listen_of(*argv: str) -> object:
    return build_parser().parse_args(["watch", *argv]).listen


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((), None),
        (("--listen", "9108"), ("127.0.0.1", 9108)),
        (("--listen", "0.0.0.0:9108"), ("0.0.0.0", 9108)),
        (("--listen", "localhost:0"), ("localhost", 0)),
        (("--listen", "[::1]:9108"), ("::1", 9108)),
        (("--listen", "[::]:9108"), ("::", 9108)),
        (("--metrics-port", "9108"), ("127.0.0.1", 9108)),
    ],
)
def test_listen_addresses(argv: tuple[str, ...], expected: object) -> None:
    assert listen_of(*argv) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("::1:9108", "put an IPv6 address in brackets: [::1]:9108"),
        (":9108", "expected HOST:PORT or PORT"),
        ("host:http", "expected a port number"),
        ("0.0.0.0:70000", "port must be 0..65535"),
    ],
)
def test_bad_listen_addresses_are_usage_errors(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        listen_of("--listen", value)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_daemon_listens_on_all_interfaces(
    emulator: Emulator, tmp_path: Path, root: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(emulator, tmp_path, root, "--listen", "0.0.0.0:0")
    daemons.append(daemon)
    (listening,) = daemon.events("metrics_listening")
    assert listening["host"] == "0.0.0.0"
    wait_for(lambda: running(emulator, 101), what="initial create")
    assert daemon.get("/healthz").status_code == 200
    # bound to every interface: reachable on an address of this host that is not loopback
    address = _non_loopback_address()
    if address is not None:
        response = httpx.get(f"http://{address}:{daemon.port}/healthz", timeout=5)
        assert response.status_code == 200


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: only picks a route
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_daemon_listens_on_ipv6_loopback(
    emulator: Emulator, tmp_path: Path, root: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(emulator, tmp_path, root, "--listen", "[::1]:0")
    daemons.append(daemon)
    response = httpx.get(f"http://[::1]:{daemon.port}/metrics", timeout=5)
    assert response.status_code == 200
    assert "reconciler_notification_failures_total" in response.text


def test_an_address_in_use_is_one_line(emulator: Emulator, tmp_path: Path, root: Path) -> None:
    from tests.conftest import RECONCILER, cli_env

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*RECONCILER, "watch", str(root), "--listen", str(port)],
            env=cli_env(emulator, tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: " in result.stderr
    assert "Traceback" not in result.stderr


# -- the container ----------------------------------------------------------------------


def _container_engine() -> tuple[str | None, str]:
    """The engine to use, or None and why not."""
    for engine in ("docker", "podman"):
        if shutil.which(engine) is None:
            continue
        check = subprocess.run(
            [engine, "info"], capture_output=True, text=True, timeout=60, check=False
        )
        if check.returncode == 0:
            return engine, ""
        reason = (check.stderr.strip().splitlines() or ["no reason given"])[-1]
        return None, f"{engine} is installed but not usable: {reason}"
    return None, "no container engine (docker or podman) on this machine"


@pytest.fixture
def engine() -> str:
    found, reason = _container_engine()
    if found is None:
        pytest.skip(reason)
    return found


@pytest.fixture
def image(engine: str) -> Iterator[str]:
    tag = f"qc-live-reconciler-test:{uuid.uuid4().hex[:12]}"
    build = subprocess.run(
        [engine, "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=900
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    try:
        yield tag
    finally:
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True, timeout=120)


def _inspect(engine: str, container: str, template: str) -> str:
    done = subprocess.run(
        [engine, "inspect", "--format", template, container],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.strip()


def test_container_serves_healthz_outside_and_its_healthcheck_passes(
    engine: str, image: str
) -> None:
    name = f"qc-reconciler-test-{uuid.uuid4().hex[:8]}"
    started = subprocess.run(
        [
            engine, "run", "-d", "--name", name,
            "-p", "127.0.0.1::9108",
            "--health-interval", "2s", "--health-start-period", "0s",
            "-v", f"{ROOT / 'deployments'}:/manifests:ro",
            image, "--sandbox",  # the embedded emulator: no account, no network
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        mapped = subprocess.run(
            [engine, "port", name, "9108/tcp"], capture_output=True, text=True, timeout=60
        ).stdout.split()[0]
        url = f"http://{mapped}/healthz"

        def healthy_outside() -> bool:
            try:
                return httpx.get(url, timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy_outside, timeout=60, what=f"{url} from outside the container")
        metrics = httpx.get(url.replace("/healthz", "/metrics"), timeout=5)
        assert "reconciler_reconciles_total" in metrics.text
        wait_for(
            lambda: _inspect(engine, name, "{{.State.Health.Status}}") == "healthy",
            timeout=90,
            what="the image's HEALTHCHECK",
        )
    finally:
        logs = subprocess.run([engine, "logs", name], capture_output=True, text=True, timeout=60)
        subprocess.run([engine, "rm", "-f", name], capture_output=True, timeout=120)
        print(logs.stdout[-2000:], logs.stderr[-2000:])
