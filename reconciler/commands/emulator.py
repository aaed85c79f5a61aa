"""`reconciler emulator`: serve the API emulator until SIGINT/SIGTERM, then exit 0."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from types import FrameType

from reconciler.config import EmulatorConfig
from reconciler.emulator import Emulator, load_seed_file, parse_fault
from reconciler.errors import ConfigError


def _credentials() -> tuple[str | None, str | None]:
    user_id, token = os.environ.get("QC_USER_ID"), os.environ.get("QC_API_TOKEN")
    if bool(user_id) != bool(token):
        raise ConfigError(
            "set both QC_USER_ID and QC_API_TOKEN for the emulator to accept, or neither "
            "to have it generate a pair"
        )
    return user_id or None, token or None


def _admin(config: EmulatorConfig) -> int:
    """`--admin ACTION:JSON`: change a persisted world (the sandbox's, or --data DIR) and
    exit, so the sandbox can rehearse a person's stop, a crash or new code."""
    if config.sandbox:
        from reconciler.sandbox import SANDBOX_DIR, sandbox_credentials

        credentials = sandbox_credentials(SANDBOX_DIR)
        user_id: str | None = credentials.user_id
        token: str | None = credentials.token
        data_dir = str(SANDBOX_DIR / "emulator")
    elif config.data:
        user_id, token = _credentials()
        data_dir = config.data
    else:
        raise ConfigError("--admin changes a persisted world: add --sandbox or --data DIR")
    actions = []
    for spec in config.admin:
        action, _, text = spec.partition(":")
        try:
            body = json.loads(text) if text.strip() else {}
        except ValueError:
            raise ConfigError(f"--admin {spec!r}: the body after ':' is not JSON") from None
        if not isinstance(body, dict):
            raise ConfigError(f"--admin {spec!r}: the body must be a JSON object")
        actions.append((action, body))
    try:
        emulator = Emulator(user_id=user_id, token=token, data_dir=data_dir)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    for action, body in actions:
        answer = emulator.admin(action, body)
        if not answer.get("success"):
            errors = "; ".join(str(e) for e in answer.get("errors") or []) or "refused"
            raise ConfigError(f"--admin {action}: {errors}")
        shown = {k: v for k, v in answer.items() if k not in ("success", "errors")}
        print(f"{action}: done" + (f" {json.dumps(shown)}" if shown else ""))
    return 0


def run(config: EmulatorConfig) -> int:
    if config.admin:
        return _admin(config)
    if config.sandbox:
        raise ConfigError("--sandbox goes with --admin (the sandbox's emulator is not served)")
    user_id, token = _credentials()
    faults = []
    for spec in config.fault:
        try:
            faults.append(parse_fault(spec))
        except ValueError as error:
            raise ConfigError(str(error)) from None
    if config.compile_delay < 0:
        raise ConfigError("--compile-delay must not be negative")
    if config.startup_delay < 0:
        raise ConfigError("--startup-delay must not be negative")
    try:
        emulator = Emulator(
            config.host,
            config.port,
            user_id=user_id,
            token=token,
            data_dir=config.data,
            compile_delay=config.compile_delay,
            startup_delay=config.startup_delay,
            access_log=lambda line: print(line, file=sys.stderr, flush=True),
        )
        if config.seed:
            emulator.seed(load_seed_file(config.seed))
        for endpoint, knobs in faults:
            emulator.inject(endpoint, **knobs)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None
    try:
        emulator.start()
    except OSError as error:
        raise ConfigError(
            f"cannot listen on {config.host}:{config.port}: {error.strerror}"
        ) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"QuantConnect API v2 emulator listening on {emulator.url}")
    print(f"user id: {emulator.user_id}, organization id: {emulator.world.organization}")
    if token is None:
        print("generated credentials; to use them from another shell:")
        print(
            f"  export QC_API_URL={emulator.url} QC_USER_ID={emulator.user_id} "
            f"QC_API_TOKEN={emulator.token}"
        )
    else:
        print("accepting the credentials in QC_USER_ID / QC_API_TOKEN")
    print("stop with Ctrl-C", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    print("emulator stopped", flush=True)
    return 0
