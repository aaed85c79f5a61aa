"""The API client against the real emulator over loopback."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from reconciler.client import Credentials, QuantConnectClient, resolve_api_url
from reconciler.emulator import Emulator
from reconciler.errors import (
    ApiError,
    AuthenticationError,
    ConfigError,
    OutcomeUnknown,
    RateLimitedError,
    ServerError,
    TransportError,
)
from tests.conftest import LIVE_NODE, OTHER_NODE

PAPER = {"id": "PaperTrading"}


def seeded(emulator: Emulator, project_id: int = 101, node: str = LIVE_NODE) -> str:
    emulator.add_project(project_id, name=f"p{project_id}")
    emulator.add_node(node)
    return emulator.add_compile(project_id)


# -- configuration ------------------------------------------------------------------


def test_missing_credentials_name_both_variables() -> None:
    with pytest.raises(ConfigError) as raised:
        Credentials.from_env({"QC_USER_ID": "1"})
    assert "QC_USER_ID" in str(raised.value) and "QC_API_TOKEN" in str(raised.value)


@pytest.mark.parametrize(
    "url", ["http://example.com/api/v2", "http://10.0.0.5/api/v2", "ftp://x/y", "nonsense"]
)
def test_plain_http_refused_except_loopback(url: str) -> None:
    with pytest.raises(ConfigError):
        resolve_api_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/api/v2",
        "http://[::1]:9/api/v2",
        "http://localhost:9/x",
        "https://www.quantconnect.com/api/v2",
    ],
)
def test_https_and_loopback_accepted(url: str) -> None:
    assert resolve_api_url(url) == url


def test_default_url_is_the_real_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QC_API_URL", raising=False)
    assert resolve_api_url(None) == "https://www.quantconnect.com/api/v2"


def test_token_absent_from_reprs_and_logs(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = Credentials(emulator.user_id, emulator.token)
    caplog.set_level(logging.DEBUG)
    with QuantConnectClient(emulator.url, credentials) as c:
        c.authenticate()
        texts = [repr(credentials), str(credentials), repr(c), caplog.text]
    for text in texts:
        assert emulator.token not in text
    assert "Authorization" not in caplog.text and "Basic " not in caplog.text


# -- auth ---------------------------------------------------------------------------


def test_authenticate_and_wrong_token(emulator: Emulator) -> None:
    with QuantConnectClient(emulator.url, Credentials(emulator.user_id, emulator.token)) as c:
        c.authenticate()
    wrong = Credentials(emulator.user_id, "0" * 64)
    with QuantConnectClient(emulator.url, wrong) as c, pytest.raises(AuthenticationError) as raised:
        c.authenticate()
    message = str(raised.value)
    assert "401" in message and emulator.user_id in message and "clock" in message
    assert "0" * 64 not in message


def test_stale_timestamp_is_401(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the client's clock is wrong; the emulator in this process keeps the real one.
    import types

    import reconciler.client

    skewed = types.SimpleNamespace(
        time=lambda: time.time() - 3 * 3600, monotonic=time.monotonic, sleep=time.sleep
    )
    monkeypatch.setattr(reconciler.client, "time", skewed)
    credentials = Credentials(emulator.user_id, emulator.token)
    with QuantConnectClient(emulator.url, credentials) as c, pytest.raises(AuthenticationError):
        c.authenticate()


# -- typed methods -----------------------------------------------------------------


def test_projects_nodes_and_compiles(emulator: Emulator, client: QuantConnectClient) -> None:
    seeded(emulator)
    assert [p.project_id for p in client.list_projects()] == [101]
    assert client.read_project(101).name == "p101"
    with pytest.raises(ApiError):
        client.read_project(999)
    nodes = client.read_nodes(101)
    assert [n.id for n in nodes] == [LIVE_NODE] and not nodes[0].busy
    compiled = client.create_compile(101)
    assert len(compiled.compile_id) == 65 and compiled.state in ("InQueue", "BuildSuccess")
    assert client.read_compile(101, compiled.compile_id).state == "BuildSuccess"


def test_create_read_list_stop_liquidate(emulator: Emulator, client: QuantConnectClient) -> None:
    compile_id = seeded(emulator)
    created = client.create_live(
        project_id=101, compile_id=compile_id, node_id=LIVE_NODE, brokerage=PAPER
    )
    assert created.deploy_id.startswith("L-")
    assert isinstance(created.version_id, int)
    read = client.read_live(101)
    assert (read.deploy_id, read.status) == (created.deploy_id, "Running")
    (listed,) = client.list_live(project_id=101)
    assert (listed.deploy_id, listed.brokerage, listed.environment) == (
        created.deploy_id,
        "QuantConnectBrokerage",
        "paper",
    )
    assert listed.active
    client.stop_live(101)
    assert client.read_live(101).status == "Stopped"
    emulator.add_node(OTHER_NODE)
    again = client.create_live(
        project_id=101, compile_id=compile_id, node_id=OTHER_NODE, brokerage=PAPER
    )
    client.liquidate_live(101)
    assert client.read_live(101).status == "Liquidated"
    assert {x.deploy_id for x in client.list_live()} == {created.deploy_id, again.deploy_id}


def test_portable_interactive_goes_on_the_wire_as_the_module(
    emulator: Emulator, client: QuantConnectClient
) -> None:
    compile_id = seeded(emulator)
    client.create_live(
        project_id=101,
        compile_id=compile_id,
        node_id=LIVE_NODE,
        brokerage={
            "id": "Interactive",
            "user": "u",
            "password": "p",
            "account": "DU1",
            "environment": "live",
            "weeklyRestartUtcTime": "22:00:00",
        },
    )
    (listed,) = client.list_live()
    assert (listed.brokerage, listed.environment) == ("InteractiveBrokersBrokerage", "live")


def test_envelope_failure_is_api_error_with_the_apis_text(
    emulator: Emulator, client: QuantConnectClient
) -> None:
    compile_id = seeded(emulator)
    client.create_live(project_id=101, compile_id=compile_id, node_id=LIVE_NODE, brokerage=PAPER)
    emulator.add_node(OTHER_NODE)
    with pytest.raises(ApiError) as raised:
        client.create_live(
            project_id=101, compile_id=compile_id, node_id=OTHER_NODE, brokerage=PAPER
        )
    assert raised.value.errors and raised.value.errors[0] in str(raised.value)
    assert emulator.creates_committed(101) == 1


# -- faults -------------------------------------------------------------------------


def test_commit_then_drop_is_outcome_unknown_and_not_resent(
    emulator: Emulator, client: QuantConnectClient
) -> None:
    compile_id = seeded(emulator)
    emulator.inject("live/create", drop=1)
    with pytest.raises(OutcomeUnknown):
        client.create_live(
            project_id=101, compile_id=compile_id, node_id=LIVE_NODE, brokerage=PAPER
        )
    assert emulator.creates_committed(101) == 1
    assert sum(1 for _ in emulator.stats()["create_times"]) == 1


def test_5xx_on_create_is_outcome_unknown_without_retry(
    emulator: Emulator, client: QuantConnectClient
) -> None:
    compile_id = seeded(emulator)
    emulator.inject("live/create", fail=1, status=502)
    with pytest.raises(OutcomeUnknown):
        client.create_live(
            project_id=101, compile_id=compile_id, node_id=LIVE_NODE, brokerage=PAPER
        )
    assert len(emulator.stats()["create_times"]) == 1
    assert emulator.creates_committed(101) == 0


def test_reads_retry_5xx_then_succeed_or_report_an_outage(
    emulator: Emulator, client: QuantConnectClient
) -> None:
    emulator.inject("live/list", fail=2, status=503)
    assert client.list_live() == []
    emulator.inject("live/list", fail=10, status=500)
    with pytest.raises(ServerError) as raised:
        client.list_live()
    assert "outage" in str(raised.value) and "credentials" in str(raised.value)


def test_429_waits_for_retry_after(emulator: Emulator, client: QuantConnectClient) -> None:
    compile_id = seeded(emulator)
    emulator.inject("live/create", ratelimit=1, retry_after=1)
    started = time.monotonic()
    created = client.create_live(
        project_id=101, compile_id=compile_id, node_id=LIVE_NODE, brokerage=PAPER
    )
    assert time.monotonic() - started >= 0.9
    assert created.deploy_id and emulator.creates_committed(101) == 1


def test_429_beyond_the_bound_is_rate_limited_error(emulator: Emulator) -> None:
    emulator.inject("live/list", ratelimit=1, retry_after=120)
    with (
        QuantConnectClient(
            emulator.url, Credentials(emulator.user_id, emulator.token), max_retry_after=5
        ) as c,
        pytest.raises(RateLimitedError),
    ):
        c.list_live()


def test_read_timeout_on_create_is_outcome_unknown(emulator: Emulator) -> None:
    compile_id = seeded(emulator)
    emulator.inject("live/create", latency=1.5)
    with (
        QuantConnectClient(
            emulator.url, Credentials(emulator.user_id, emulator.token), read_timeout=0.3
        ) as c,
        pytest.raises(OutcomeUnknown),
    ):
        c.create_live(project_id=101, compile_id=compile_id, node_id=LIVE_NODE, brokerage=PAPER)


def test_unreachable_api_is_transport_error() -> None:
    with (
        QuantConnectClient(
            "http://127.0.0.1:9/api/v2", Credentials("1", "t"), backoff=0.01, connect_timeout=1
        ) as c,
        pytest.raises(TransportError) as raised,
    ):
        c.list_live()
    assert "cannot reach" in str(raised.value)


def test_custom_transport_seam_is_used() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True, "live": []})

    with QuantConnectClient(
        "https://example.invalid/api/v2",
        Credentials("42", "secret-token"),
        transport=httpx.MockTransport(handler),
    ) as c:
        c.list_live()
    (request,) = seen
    assert request.headers["Timestamp"].isdigit()
    assert request.headers["Authorization"].startswith("Basic ")
    assert request.url.path == "/api/v2/live/list"


def test_one_client_serves_many_threads_on_a_bounded_set_of_lanes(emulator: Emulator) -> None:
    from concurrent.futures import ThreadPoolExecutor

    compile_ids = {}
    for project_id in range(201, 241):
        emulator.add_project(project_id)
        emulator.add_node(f"LN-{project_id:032x}")
        compile_ids[project_id] = emulator.add_compile(project_id)
    with QuantConnectClient(
        emulator.url, Credentials(emulator.user_id, emulator.token), max_connections=8
    ) as c:
        for _ in range(3):  # short-lived pools, as each daemon reconcile makes: no lane leak
            with ThreadPoolExecutor(16) as pool:
                listed = list(pool.map(lambda _: len(c.list_live()) >= 0, range(32)))
            assert all(listed)
        with ThreadPoolExecutor(16) as pool:
            created = list(
                pool.map(
                    lambda p: (
                        c.create_live(
                            project_id=p,
                            compile_id=compile_ids[p],
                            node_id=f"LN-{p:032x}",
                            brokerage=PAPER,
                        ).deploy_id
                    ),
                    compile_ids,
                )
            )
        assert len(set(created)) == 40
        assert sum(lane is not None for lane in c._lanes) <= 4  # 8 connections, 2 a lane
    assert emulator.creates_committed() == 40
    with pytest.raises(RuntimeError, match="closed"):
        c.list_live()
