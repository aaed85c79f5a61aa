"""The statuses of compiles and deployments, and how they follow from a record and the clock.

Compiles advance InQueue -> BuildSuccess after `compile_delay` seconds (BuildError for a
project marked `failBuild`).

A new deployment starts up as on the real API: with a start-up of d > 0 seconds it is
InQueue for d/2 seconds, LoggingIn until d, then Running (d = 0: Running at once). A
project marked `failLogin` sees its new deployments end in RuntimeError ("Brokerage login
failed: ...") once start-up is over; `live/create` itself still succeeds, as the real API
answers before the brokerage login is tried.

Both are computed from the clock when read, never stored: no thread moves anything, and a
restart keeps them. The functions here are pure (the time is an argument), so the world
holds the records and this module says what they mean now.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ACTIVE = frozenset({"InQueue", "LoggingIn", "Initializing", "History", "Running"})
COMPILE_STATES = ("InQueue", "BuildSuccess", "BuildError")
LIVE_STATUSES = (
    "DeployError", "InQueue", "Running", "Stopped", "Liquidated", "Deleted", "Completed",
    "RuntimeError", "Invalid", "LoggingIn", "Initializing", "History",
)  # fmt: skip
ENDED = tuple(s for s in LIVE_STATUSES if s not in ACTIVE)
LOGIN_FAILED = "Brokerage login failed"
DEFAULT_LOGIN_FAILURE = f"{LOGIN_FAILED}: invalid credentials (emulated)."

# (status, stopped, message) of a deployment: its status, when it stopped (None while it
# runs) and the message an ended one carries.
State = tuple[str, float | None, str]


def login_failure(value: object) -> str:
    """The message a failing brokerage login ends with; "" when logins succeed.

    True gives a default message; a string is the reason, prefixed with "Brokerage login
    failed: " unless it already says so (the API's wording, which clients may match).
    """
    if value is None or value is False:
        return ""
    if value is True:
        return DEFAULT_LOGIN_FAILURE
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"failLogin must be true, false or a non-empty message, not {value!r}")
    return value if value.startswith(LOGIN_FAILED) else f"{LOGIN_FAILED}: {value}"


def deployment_state(
    deployment: Mapping[str, Any], now: float, *, login_known: bool = True
) -> State:
    """(status, stopped, message) of a deployment at `now`.

    A stored status other than Running was set by a stop or an end and stands as it
    is. A stored Running is refined by the clock: start-up phases until `ready`, then
    RuntimeError if the brokerage login fails. `login_known=False` renders what the
    create call answers, before the login has been tried.
    """
    status = deployment["status"]
    if status != "Running":
        return status, deployment["stopped"], deployment["error"]
    launched = deployment["launched"]
    ready = deployment.get("ready", launched)  # state files from before start-up
    if now < ready:
        return ("InQueue" if now < (launched + ready) / 2 else "LoggingIn"), None, ""
    failure = deployment.get("loginError", "") if login_known else ""
    if failure:
        return "RuntimeError", ready, failure
    return "Running", None, deployment["error"]


def compile_state(
    compile: Mapping[str, Any], project: Mapping[str, Any], now: float, delay: float
) -> str:
    """The state of `compile` (of `project`) at `now`, builds taking `delay` seconds."""
    if compile["state"] != "InQueue":
        return str(compile["state"])
    if project.get("failBuild"):
        return "BuildError"
    if now >= compile["created"] + delay:
        return "BuildSuccess"
    return "InQueue"
