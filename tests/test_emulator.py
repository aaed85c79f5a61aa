"""The emulator over loopback, spoken to with raw httpx and the API's own auth scheme.

Deliberately not through our client: the emulator is the reference the client is tested
against, so it is checked independently here.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.emulator import AUTH_WINDOW, Emulator, load_seed_file, parse_fault
from reconciler.emulator.params import parse_fields
from reconciler.emulator.server import READS, ROUTES
from reconciler.emulator.spec import ARRAY, BROKERAGES, INTEGER, STRING, Module
from tests.conftest import LIVE_NODE, OTHER_NODE

PAPER = {"id": "QuantConnectBrokerage"}


def headers(user_id: str, token: str, stamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if stamp is None else stamp
    digest = hashlib.sha256(f"{token}:{stamp}".encode()).hexdigest()
    basic = base64.b64encode(f"{user_id}:{digest}".encode()).decode()
    return {"Timestamp": str(stamp), "Authorization": f"Basic {basic}"}


class Api:
    """Requests with correct authentication, returning (status, body): POST with a JSON body
    (`post`), GET with query parameters (`get`), POST with a form body (`form`)."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.http = httpx.Client(timeout=10)

    def post(self, endpoint: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        url = f"{self.emulator.url}/{endpoint}"
        auth = headers(self.emulator.user_id, self.emulator.token)
        response = self.http.post(url, json={} if body is None else body, headers=auth, **kwargs)
        return response.status_code, response.json()

    def get(self, endpoint: str, params: Any = None) -> tuple[int, Any]:
        url = f"{self.emulator.url}/{endpoint}"
        auth = headers(self.emulator.user_id, self.emulator.token)
        response = self.http.get(url, params=params, headers=auth)
        return response.status_code, response.json()

    def form(self, endpoint: str, fields: Any) -> tuple[int, Any]:
        url = f"{self.emulator.url}/{endpoint}"
        auth = headers(self.emulator.user_id, self.emulator.token)
        response = self.http.post(url, data=fields, headers=auth)
        return response.status_code, response.json()

    def ok(self, endpoint: str, body: Any = None) -> Any:
        status, data = self.post(endpoint, body)
        assert status == 200 and data["success"] is True and data["errors"] == [], data
        return data

    def refused(self, endpoint: str, body: Any = None) -> str:
        status, data = self.post(endpoint, body)
        assert status == 200 and data["success"] is False and data["errors"], data
        return str(data["errors"][0])

    def admin(self, action: str, body: Any = None) -> httpx.Response:
        url = self.emulator.url.replace("/api/v2", f"/_emulator/{action}")
        auth = headers(self.emulator.user_id, self.emulator.token)
        return self.http.post(url, json={} if body is None else body, headers=auth)


@pytest.fixture
def api(emulator: Emulator) -> Iterator[Api]:
    client = Api(emulator)
    yield client
    client.http.close()


def world(emulator: Emulator, project_id: int = 101, node: str = LIVE_NODE) -> str:
    emulator.add_project(project_id, name=f"p{project_id}")
    if not emulator.has_node(node):
        emulator.add_node(node)
    return emulator.add_compile(project_id)


def create_body(project_id: int, compile_id: str, node: str = LIVE_NODE, **extra: Any) -> Any:
    body = {
        "versionId": "-1",
        "projectId": project_id,
        "compileId": compile_id,
        "nodeId": node,
        "brokerage": PAPER,
    }
    body.update(extra)
    return body


# ---- authentication --------------------------------------------------------------------


def test_auth_failures_are_401_with_www_authenticate_and_a_json_body(
    emulator: Emulator, api: Api
) -> None:
    url = f"{emulator.url}/projects/read"
    now = int(time.time())
    good = headers(emulator.user_id, emulator.token)
    cases = {
        "missing": {},
        "not basic": {"Authorization": "Bearer x", "Timestamp": str(now)},
        "no timestamp": {"Authorization": good["Authorization"]},
        "text timestamp": {**good, "Timestamp": "yesterday"},
        "stale": headers(emulator.user_id, emulator.token, now - AUTH_WINDOW - 60),
        "future": headers(emulator.user_id, emulator.token, now + AUTH_WINDOW + 60),
        "wrong hash": headers(emulator.user_id, "0" * 64),
        "unknown user": headers("999", emulator.token),
        "garbage basic": {"Authorization": "Basic !!!", "Timestamp": str(now)},
    }
    for case, sent in cases.items():
        response = api.http.post(url, json={}, headers=sent)
        assert response.status_code == 401, case
        assert response.headers["WWW-Authenticate"].startswith("Basic"), case
        body = response.json()
        assert body["success"] is False and body["errors"], case
        assert emulator.token not in response.text
    assert api.http.post(url, json={}, headers=good).status_code == 200
    assert emulator.token not in repr(emulator)


def test_routing_and_bodies(emulator: Emulator, api: Api) -> None:
    auth = headers(emulator.user_id, emulator.token)
    assert api.http.get(f"{emulator.url}/projects/read", headers=auth).status_code == 200
    for method in ("PUT", "DELETE", "PATCH"):
        refused = api.http.request(method, f"{emulator.url}/projects/read", headers=auth)
        assert refused.status_code == 405 and refused.headers["Allow"] == "GET, POST", method
    assert api.post("no/such/endpoint")[0] == 404
    assert api.get("no/such/endpoint")[0] == 404
    outside = api.http.post(emulator.url.replace("/api/v2", "/other"), json={}, headers=auth)
    assert outside.status_code == 404
    broken = api.http.post(f"{emulator.url}/live/list", content=b"{nope", headers=auth)
    assert broken.status_code == 400 and broken.json()["success"] is False
    listed = api.http.post(f"{emulator.url}/live/list", content=b"[1, 2]", headers=auth)
    assert listed.status_code == 400
    query = api.http.get(f"{emulator.url}/live/list?status=%ff", headers=auth)
    assert query.status_code == 400 and "Query string is not valid" in query.json()["errors"][0]
    form = {**auth, "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    garbled = api.http.post(f"{emulator.url}/live/list", content=b"status=\xff", headers=form)
    assert garbled.status_code == 400 and "Form body is not valid" in garbled.json()["errors"][0]


# ---- projects, nodes, compiles -----------------------------------------------------------


def test_projects_read_all_one_and_slices(emulator: Emulator, api: Api) -> None:
    for project_id in (3, 1, 2):
        emulator.add_project(project_id, name=f"p{project_id}")
    data = api.ok("projects/read")
    assert [p["projectId"] for p in data["projects"]] == [1, 2, 3]
    first = data["projects"][0]
    for field in ("organizationId", "name", "modified", "created", "ownerId", "language"):
        assert field in first
    assert first["language"] in ("C#", "Py") and isinstance(first["ownerId"], int)
    assert all(isinstance(v["id"], int) for v in data["versions"])
    assert [
        p["projectId"] for p in api.ok("projects/read", {"start": 1, "end": 2})["projects"]
    ] == [2]
    assert api.ok("projects/read", {"projectId": 2})["projects"][0]["name"] == "p2"
    assert "not found" in api.refused("projects/read", {"projectId": 99})
    assert "integer" in api.refused("projects/read", {"projectId": "2"})


def test_nodes_read_update_and_busy(emulator: Emulator, api: Api) -> None:
    compile_id = world(emulator)
    emulator.add_node(OTHER_NODE)
    data = api.ok("projects/nodes/read", {"projectId": 101})
    assert data["autoSelectNode"] is True and data["nodes"]["backtest"] == []
    assert {n["id"] for n in data["nodes"]["live"]} == {LIVE_NODE, OTHER_NODE}
    updated = api.ok("projects/nodes/update", {"projectId": 101, "nodes": [OTHER_NODE]})
    assert updated["autoSelectNode"] is False
    assert {n["id"]: n["active"] for n in updated["nodes"]["live"]} == {
        LIVE_NODE: False,
        OTHER_NODE: True,
    }
    assert "Unknown node" in api.refused(
        "projects/nodes/update", {"projectId": 101, "nodes": ["LN-x"]}
    )
    assert api.ok("projects/nodes/update", {"projectId": 101, "nodes": []})["autoSelectNode"]
    api.ok("live/create", create_body(101, compile_id))
    busy = {n["id"]: n for n in api.ok("projects/nodes/read", {"projectId": 101})["nodes"]["live"]}
    assert busy[LIVE_NODE]["busy"] and busy[LIVE_NODE]["projectId"] == 101
    assert busy[LIVE_NODE]["projectName"] == "p101" and not busy[OTHER_NODE]["busy"]
    assert busy[LIVE_NODE]["hasGpu"] in (0, 1)


def test_lean_versions(api: Api) -> None:
    versions = api.ok("lean/versions/read")["versions"]
    assert versions and all(isinstance(v["id"], int) for v in versions)


def test_a_compile_still_in_queue_cannot_be_deployed() -> None:
    with Emulator(compile_delay=60) as emulator, httpx.Client() as http:
        api = Api(emulator)
        api.http = http
        emulator.add_project(1)
        emulator.add_node(LIVE_NODE)
        queued = api.ok("compile/create", {"projectId": 1})["compileId"]
        assert "not built successfully (InQueue)" in api.refused(
            "live/create", create_body(1, queued)
        )
        assert emulator.creates_committed() == 0


def test_compiles_advance_and_fail_and_belong_to_their_project() -> None:
    with Emulator(compile_delay=0.3) as emulator, httpx.Client() as http:
        api = Api(emulator)
        api.http = http
        emulator.add_project(1)
        emulator.add_project(2, fail_build=True)
        made = api.ok("compile/create", {"projectId": 1})
        head, _, tail = made["compileId"].partition("-")
        assert len(head) == len(tail) == 32 and int(head + tail, 16) >= 0
        assert made["state"] == "InQueue" and made["projectId"] == 1
        deadline = time.monotonic() + 10
        states = []
        while time.monotonic() < deadline:
            state = api.ok("compile/read", {"projectId": 1, "compileId": made["compileId"]})
            states.append(state["state"])
            if state["state"] != "InQueue":
                break
            time.sleep(0.05)
        assert states[0] == "InQueue" and states[-1] == "BuildSuccess"
        broken = api.ok("compile/create", {"projectId": 2})["compileId"]
        assert api.ok("compile/read", {"projectId": 2, "compileId": broken})["state"] == (
            "BuildError"
        )
        assert "not found" in api.refused(
            "compile/read", {"projectId": 2, "compileId": made["compileId"]}
        )


# ---- live/create rules -----------------------------------------------------------------


def test_create_answers_as_the_spec_says(emulator: Emulator, api: Api) -> None:
    compile_id = world(emulator)
    data = api.ok("live/create", create_body(101, compile_id))
    assert data["deployId"].startswith("L-") and data["projectId"] == 101
    assert data["versionId"] == 17202 and data["live"]["status"] == "Running"
    assert data["live"]["stopped"] is None and data["live"]["deployId"] == data["deployId"]
    assert emulator.creates_committed(101) == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"versionId": -1}, "versionId must be a string"),
        ({"versionId": "123"}, "not a LEAN version"),
        ({"projectId": "101"}, "projectId must be an integer"),
        ({"projectId": None}, "projectId is required"),
        ({"compileId": None}, "compileId is required"),
        ({"nodeId": None}, "nodeId is required"),
        ({"projectId": 555}, "Project 555 not found"),
        ({"nodeId": "LN-nope"}, "not found"),
        ({"compileId": "0-0"}, "not found in project"),
    ],
)
def test_create_refuses_bad_requests(
    emulator: Emulator, api: Api, change: dict[str, Any], reason: str
) -> None:
    compile_id = world(emulator)
    assert reason in api.refused("live/create", create_body(101, compile_id, **change))
    assert emulator.creates_committed() == 0


def test_create_rules_one_per_project_one_per_node_built_compile(
    emulator: Emulator, api: Api
) -> None:
    compile_id = world(emulator)
    other_compile = world(emulator, 102)
    failed = emulator.add_compile(101, state="BuildError")
    assert "not built" in api.refused("live/create", create_body(101, failed))
    assert "not found in project" in api.refused("live/create", create_body(101, other_compile))
    first = api.ok("live/create", create_body(101, compile_id))["deployId"]
    emulator.add_node(OTHER_NODE)
    assert "already has a live algorithm" in api.refused(
        "live/create", create_body(101, compile_id, nodeId=OTHER_NODE)
    )
    assert "busy" in api.refused("live/create", create_body(102, other_compile))
    assert emulator.creates_committed(101) == 1
    api.ok("live/update/stop", {"projectId": 101})
    again = api.ok("live/create", create_body(101, compile_id))["deployId"]
    assert again != first and emulator.creates_committed(101) == 2


# ---- brokerage settings ----------------------------------------------------------------


def valid_settings(module: Module) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, kind in module.fields.items():
        if isinstance(kind, tuple):
            values[name] = kind[0]
        elif kind == INTEGER:
            values[name] = 1
        elif kind == ARRAY:
            values[name] = []
        else:
            assert kind == STRING
            values[name] = "x"
    return values


def fresh_create(emulator: Emulator, api: Api, brokerage: Any, **extra: Any) -> tuple[int, Any]:
    project_id = 1000 + len(emulator.world.projects)
    node = f"LN-{project_id:032x}"
    compile_id = world(emulator, project_id, node)
    return api.post(
        "live/create", create_body(project_id, compile_id, node, brokerage=brokerage, **extra)
    )


@pytest.mark.parametrize("module", BROKERAGES, ids=lambda m: m.component)
def test_every_module_is_accepted_and_its_required_fields_enforced(
    emulator: Emulator, api: Api, module: Module
) -> None:
    settings = valid_settings(module)
    status, data = fresh_create(emulator, api, settings)
    assert status == 200 and data["success"], data
    (listed,) = [d for d in api.ok("live/list")["live"] if d["deployId"] == data["deployId"]]
    assert listed["brokerage"] == module.id
    assert listed["environment"] in ("live", "paper")
    for field in module.required:
        if field == "id" or (module.exchange and field == "binance-exchange-name"):
            continue
        missing = {k: v for k, v in settings.items() if k != field}
        _, refused = fresh_create(emulator, api, missing)
        assert refused["success"] is False and field in refused["errors"][0], field


@pytest.mark.parametrize(
    ("settings", "environment"),
    [
        ({"id": "QuantConnectBrokerage"}, "paper"),
        (
            {
                "id": "TradierBrokerage",
                "tradier-account-id": "a",
                "tradier-access-token": "t",
                "tradier-environment": "paper",
            },
            "paper",
        ),
        (
            {
                "id": "OandaBrokerage",
                "oanda-account-id": "a",
                "oanda-access-token": "t",
                "oanda-environment": "Trade",
            },
            "live",
        ),
        (
            {
                "id": "OandaBrokerage",
                "oanda-account-id": "a",
                "oanda-access-token": "t",
                "oanda-environment": "Practice",
            },
            "paper",
        ),
        (
            {
                "id": "InteractiveBrokersBrokerage",
                "ib-user-name": "u",
                "ib-account": "a",
                "ib-password": "p",
                "ib-weekly-restart-utc-time": "22:00:00",
            },
            "live",
        ),
        (
            {
                "id": "BinanceBrokerage",
                "binance-exchange-name": "Binance",
                "binance-api-key": "k",
                "binance-api-secret": "s",
                "binance-use-testnet": "paper",
            },
            "paper",
        ),
        (
            {
                "id": "Interactive",
                "user": "u",
                "password": "p",
                "account": "a",
                "environment": "live",
            },
            "live",
        ),
        (
            {"id": "FXCM", "user": "u", "password": "p", "account": "a", "environment": "paper"},
            "paper",
        ),
        ({"id": "PaperTrading"}, "paper"),
    ],
)
def test_list_reports_the_environment_by_convention(
    emulator: Emulator, api: Api, settings: dict[str, Any], environment: str
) -> None:
    status, data = fresh_create(emulator, api, settings)
    assert status == 200 and data["success"], data
    (listed,) = api.ok("live/list")["live"]
    assert listed["environment"] == environment


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ("PaperTrading", "expected an object"),
        ({}, "id is required"),
        ({"id": "Robinhood"}, "unknown id"),
        ({"id": "Interactive", "ib-user-name": "u"}, "module form"),
        (
            {"id": "Tradier", "user": "u", "password": "p", "account": "a", "environment": "prod"},
            "environment",
        ),
        ({"id": "Oanda", "environment": "live"}, "required"),
        (
            {
                "id": "TastytradeBrokerage",
                "tastytrade-account-number": "12",
                "tastytrade-refresh-token": "t",
            },
            "expected an integer",
        ),
        (
            {
                "id": "KrakenBrokerage",
                "kraken-api-key": "k",
                "kraken-api-secret": "s",
                "kraken-verification-tier": "Gold",
            },
            "not one of",
        ),
        (
            {
                "id": "BinanceBrokerage",
                "binance-exchange-name": "Bitstamp",
                "binance-api-key": "k",
                "binance-api-secret": "s",
            },
            "binance-exchange-name",
        ),
        (
            {
                "id": "BinanceBrokerage",
                "binance-exchange-name": "BinanceUS",
                "binance-api-key": "k",
                "binance-api-secret": "s",
            },
            "binanceus-api-key",
        ),
    ],
)
def test_bad_brokerage_settings_are_refused_with_a_reason(
    emulator: Emulator, api: Api, settings: Any, reason: str
) -> None:
    status, data = fresh_create(emulator, api, settings)
    assert status == 200 and data["success"] is False and reason in data["errors"][0], data
    assert emulator.creates_committed() == 0


def test_data_providers(emulator: Emulator, api: Api) -> None:
    polygon = {"PolygonDataFeed": {"id": "Polygon", "polygon-api-key": "k"}}
    assert fresh_create(emulator, api, PAPER, dataProviders=polygon)[1]["success"]
    for providers, reason in [
        ({}, "at least one"),
        ({"Bloomberg": {"id": "Bloomberg"}}, "unknown provider"),
        ({"PolygonDataFeed": {"id": "PolygonDataFeed", "polygon-api-key": "k"}}, "unknown id"),
        ({"QuantConnectBrokerage": "yes"}, "expected an object"),
    ]:
        _, data = fresh_create(emulator, api, PAPER, dataProviders=providers)
        assert data["success"] is False and reason in data["errors"][0], (providers, data)
    tradier_paper = {
        "id": "TradierBrokerage",
        "tradier-account-id": "a",
        "tradier-access-token": "t",
        "tradier-environment": "paper",
    }
    _, data = fresh_create(
        emulator, api, tradier_paper, dataProviders={"TradierBrokerage": tradier_paper}
    )
    assert data["success"] is False and "Tradier in paper" in data["errors"][0]


# ---- read, list, stop, liquidate ----------------------------------------------------------


def test_read_list_stop_liquidate(emulator: Emulator, api: Api) -> None:
    compile_id = world(emulator)
    assert "No live algorithm" in api.refused("live/read", {"projectId": 101})
    assert "no running" in api.refused("live/update/stop", {"projectId": 101})
    first = api.ok("live/create", create_body(101, compile_id))["deployId"]
    read = api.ok("live/read", {"projectId": 101})
    assert (read["deployId"], read["status"], read["projectName"]) == (first, "Running", "p101")
    assert isinstance(read["charts"], dict) and "Equity" in read["runtimeStatistics"]
    api.ok("live/update/stop", {"projectId": 101})
    assert api.ok("live/read", {"projectId": 101})["status"] == "Stopped"
    second = api.ok("live/create", create_body(101, compile_id))["deployId"]
    api.ok("live/update/liquidate", {"projectId": 101})
    latest = api.ok("live/read", {"projectId": 101})
    assert (latest["deployId"], latest["status"]) == (second, "Liquidated")
    assert latest["stopped"] is not None
    every = api.ok("live/list")["live"]
    assert {d["deployId"]: d["status"] for d in every} == {first: "Stopped", second: "Liquidated"}
    assert all(d["launched"].endswith("Z") and "T" in d["launched"] for d in every)
    assert [d["deployId"] for d in api.ok("live/list", {"status": "Stopped"})["live"]] == [first]
    assert api.ok("live/list", {"projectId": 999})["live"] == []
    assert "status must be one of" in api.refused("live/list", {"status": "Deleted"})


# ---- faults and statistics ---------------------------------------------------------------


def test_fault_knobs(emulator: Emulator, api: Api) -> None:
    compile_id = world(emulator)
    emulator.inject("live/list", latency=0.3)
    started = time.monotonic()
    api.ok("live/list")
    assert time.monotonic() - started >= 0.3
    emulator.clear_faults()

    emulator.inject("live/list", fail=2, status=503)
    assert [api.post("live/list")[0] for _ in range(3)] == [503, 503, 200]

    emulator.inject("live/list", ratelimit=1, retry_after=7)
    auth = headers(emulator.user_id, emulator.token)
    limited = api.http.post(f"{emulator.url}/live/list", json={}, headers=auth)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"

    emulator.inject("live/create", drop_before=1)
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("live/create", create_body(101, compile_id))
    assert emulator.creates_committed(101) == 0

    emulator.inject("live/create", drop=1)
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("live/create", create_body(101, compile_id))
    assert emulator.creates_committed(101) == 1  # committed, answer lost
    assert len(emulator.active_deployments(101)) == 1

    stats = emulator.stats()
    assert stats["calls"]["live/list"]["total"] == 5
    assert stats["calls"]["live/list"]["503"] == 2 and stats["calls"]["live/list"]["429"] == 1
    assert stats["calls"]["live/create"]["dropped"] == 2
    assert [set(t) >= {"time", "projectId"} for t in stats["create_times"]] == [True, True]
    with pytest.raises(TypeError):
        emulator.inject("live/list", explode=1)
    with pytest.raises(ValueError):
        emulator.inject("live/teleport", fail=1)


def test_admin_endpoints(emulator: Emulator, api: Api) -> None:
    compile_id = world(emulator)
    answer = api.admin("faults", {"endpoint": "live/list", "fail": 1, "status": 502})
    assert answer.json()["faults"]["live/list"]["fail"] == 1
    assert api.post("live/list")[0] == 502
    api.admin("faults", {"endpoint": "live/list", "fail": 5})
    api.admin("faults/clear")
    assert api.post("live/list")[0] == 200
    assert api.admin("faults", {"endpoint": "live/list", "wobble": 1}).json()["success"] is False
    api.ok("live/create", create_body(101, compile_id))
    killed = api.admin("live/kill", {"projectId": 101}).json()
    assert killed["success"] and api.ok("live/read", {"projectId": 101})["status"] == "RuntimeError"
    stats = api.admin("stats").json()
    assert stats["calls"]["live/create"]["total"] == 1 and stats["creates_committed"] == {"101": 1}
    assert api.admin("seed", {"projects": [{"projectId": 7, "name": "seeded"}]}).json()["success"]
    assert emulator.has_project(7)
    assert api.admin("nothing").status_code == 404
    anonymous = api.http.post(emulator.url.replace("/api/v2", "/_emulator/stats"), json={})
    assert anonymous.status_code == 401


def test_parse_fault() -> None:
    assert parse_fault("live/create:fail=2,status=500") == (
        "live/create",
        {"fail": 2.0, "status": 500.0},
    )
    assert parse_fault("live/list:retry-after=3,ratelimit=1")[1] == {
        "retry_after": 3.0,
        "ratelimit": 1.0,
    }
    for bad in ("live/create", "live/create:boom=1", "live/create:fail=x", ":fail=1"):
        with pytest.raises(ValueError):
            parse_fault(bad)


# ---- persistence and seeding -------------------------------------------------------------


def test_state_survives_a_restart_and_never_holds_credentials(tmp_path: Path) -> None:
    data = tmp_path / "data"
    secret = "Zebra-secret-4471"
    with Emulator(data_dir=str(data), compile_delay=0) as emulator:
        emulator.add_project(5, name="kept")
        emulator.add_node(LIVE_NODE)
        compile_id = emulator.add_compile(5)
        with httpx.Client() as http:
            api = Api(emulator)
            api.http = http
            ib = {
                "id": "InteractiveBrokersBrokerage",
                "ib-user-name": "u",
                "ib-account": "DU1",
                "ib-password": secret,
                "ib-weekly-restart-utc-time": "22:00:00",
            }
            deploy_id = api.ok("live/create", create_body(5, compile_id, brokerage=ib))["deployId"]
    for path in data.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace")
    assert [p.name for p in data.iterdir()] == ["emulator.json"]  # no temporary file left
    with Emulator(data_dir=str(data)) as again:
        assert again.has_project(5) and again.has_node(LIVE_NODE) and again.has_compile(compile_id)
        assert [d["deployId"] for d in again.active_deployments(5)] == [deploy_id]
        assert again.creates_committed(5) == 1
    (data / "emulator.json").write_text("{half")
    with pytest.raises(ValueError, match="unreadable"):
        Emulator(data_dir=str(data))


def test_seed_from_yaml_and_json_twice(tmp_path: Path) -> None:
    seed_yaml = tmp_path / "seed.yaml"
    seed_yaml.write_text(
        "projects:\n"
        "  - {projectId: 1, name: one}\n"
        "  - {projectId: 2, failBuild: true}\n"
        f"nodes: [{{id: {LIVE_NODE}}}, {{id: {OTHER_NODE}}}]\n"
        "compiles: [{projectId: 1, compileId: c-1}]\n"
        f"live: [{{projectId: 1, nodeId: {LIVE_NODE}, brokerage: {{id: QuantConnectBrokerage}}}}]\n"
    )
    seed_json = tmp_path / "seed.json"
    seed_json.write_text(json.dumps(load_seed_file(str(seed_yaml))))
    with Emulator(compile_delay=0) as emulator:
        for _ in range(2):
            emulator.seed(load_seed_file(str(seed_yaml)))
            emulator.seed(load_seed_file(str(seed_json)))
        assert emulator.has_compile("c-1") and len(emulator.active_deployments()) == 1
        assert emulator.world.projects[2]["failBuild"] is True
    for text, reason in [
        ("[1, 2]", "mapping"),
        ("projects: 3", "list of mappings"),
        ("planets: []", "unknown seed sections"),
        ("projects: [{projectId: zero}]", "positive integer"),
        ("{unclosed", "not YAML"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with Emulator() as emulator, pytest.raises(ValueError, match=reason):
            emulator.seed(load_seed_file(str(bad)))
    with pytest.raises(ValueError, match="cannot read"):
        load_seed_file(str(tmp_path / "missing.yaml"))


# ---- lifecycle ---------------------------------------------------------------------------


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_stop_leaves_no_thread_and_no_port_behind() -> None:
    before = {t.ident for t in threading.enumerate()}
    emulator = Emulator(compile_delay=0).start()
    port = int(emulator.url.split(":")[2].split("/")[0])
    assert emulator.url == f"http://127.0.0.1:{port}/api/v2"
    emulator.inject("live/list", latency=30)
    kept_open = httpx.Client()
    kept_open.post(
        f"{emulator.url}/projects/read",
        json={},
        headers=headers(emulator.user_id, emulator.token),
    )  # a keep-alive connection left open
    outcome: list[str] = []

    def sleeping_request() -> None:
        try:
            httpx.post(
                f"{emulator.url}/live/list",
                json={},
                headers=headers(emulator.user_id, emulator.token),
                timeout=60,
            )
            outcome.append("answered")
        except httpx.HTTPError:
            outcome.append("cut off")

    sleeper = threading.Thread(target=sleeping_request)
    sleeper.start()
    time.sleep(0.3)  # the request is now sleeping on its injected latency
    started = time.monotonic()
    emulator.stop()
    assert time.monotonic() - started < 10
    sleeper.join(timeout=10)
    kept_open.close()
    assert not sleeper.is_alive() and outcome
    assert {t.ident for t in threading.enumerate()} <= before
    assert port_is_free(port)


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        emulator = Emulator("::1").start()
    except OSError:
        pytest.skip("::1 is not configured here")
    try:
        assert emulator.url.startswith("http://[::1]:")
        response = httpx.post(
            f"{emulator.url}/live/list",
            json={},
            headers=headers(emulator.user_id, emulator.token),
        )
        assert response.json() == {"live": [], "success": True, "errors": []}
    finally:
        emulator.stop()


# ---- the command -------------------------------------------------------------------------


def start_cli(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.Popen[str], list[str]]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("QC_")}
    environment.update(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=environment,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:  # bounded: ends at the prompt line or when the process exits
        lines.append(line)
        if line.startswith("stop with"):
            break
    return proc, lines


def stop_cli(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out + err


def test_command_with_credentials_from_the_environment(tmp_path: Path) -> None:
    token = "e" * 64
    seed = tmp_path / "seed.yaml"
    seed.write_text("projects: [{projectId: 42, name: from-seed}]\n")
    proc, lines = start_cli(
        tmp_path,
        "--seed",
        str(seed),
        "--fault",
        "live/list:fail=1,status=503",
        QC_USER_ID="4242",
        QC_API_TOKEN=token,
    )
    try:
        text = "".join(lines)
        url = text.split("listening on ", 1)[1].split()[0]
        assert "user id: 4242" in text and token not in text
        auth = headers("4242", token)
        projects = httpx.post(f"{url}/projects/read", json={}, headers=auth).json()
        assert [p["name"] for p in projects["projects"]] == ["from-seed"]
        assert httpx.post(f"{url}/live/list", json={}, headers=auth).status_code == 503
        assert httpx.post(f"{url}/live/list", json={}, headers=auth).status_code == 200
    finally:
        code, rest = stop_cli(proc)
    assert code == 0 and token not in rest and "Traceback" not in rest


def test_command_generates_credentials_and_stops_on_sigint(tmp_path: Path) -> None:
    proc, lines = start_cli(tmp_path)
    try:
        text = "".join(lines)
        exported = text.split("export ", 1)[1].splitlines()[0].split()
        values = dict(item.split("=", 1) for item in exported)
        answer = httpx.post(
            f"{values['QC_API_URL']}/live/list",
            json={},
            headers=headers(values["QC_USER_ID"], values["QC_API_TOKEN"]),
        )
        assert answer.json()["success"] is True
    finally:
        code, rest = stop_cli(proc, signal.SIGINT)
    assert code == 0 and "Traceback" not in rest


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {"QC_USER_ID": "1"}, "QC_API_TOKEN"),
        (("--fault", "live/create:boom=1"), {}, "unknown knob"),
        (("--fault", "teleport:fail=1"), {}, "unknown endpoint"),
        (("--seed", "missing.yaml"), {}, "cannot read seed file"),
        (("--startup-delay", "-1"), {}, "--startup-delay must not be negative"),
    ],
)
def test_command_errors_are_one_line(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("QC_")}
    environment.update(env)
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "emulator", "--port", "0", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1 and message in result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_command_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and "--seed" in result.stdout and "--fault" in result.stdout
    assert "--startup-delay" in result.stdout


def test_command_startup_delay(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(
        "projects: [{projectId: 9, name: slow}]\n"
        f"nodes: [{{id: {LIVE_NODE}}}]\n"
        "compiles: [{projectId: 9, compileId: c-9}]\n"
    )
    token = "f" * 64
    proc, lines = start_cli(
        tmp_path,
        "--seed",
        str(seed),
        "--startup-delay",
        "60",
        QC_USER_ID="99",
        QC_API_TOKEN=token,
    )
    try:
        url = "".join(lines).split("listening on ", 1)[1].split()[0]
        with httpx.Client(timeout=10) as http:
            created = http.post(
                f"{url}/live/create", json=create_body(9, "c-9"), headers=headers("99", token)
            ).json()
            assert created["success"] and created["live"]["status"] == "InQueue", created
            read = http.post(
                f"{url}/live/read", json={"projectId": 9}, headers=headers("99", token)
            )
            assert read.json()["status"] == "InQueue"
    finally:
        code, rest = stop_cli(proc)
    assert code == 0 and "Traceback" not in rest


# ---- day 2: authenticate, code changes, start-up, failed logins, ends, statistics ------------


class SteppedClock:
    """The world's clock, moved by the test: start-up and compile phases without sleeping."""

    def __init__(self, now: float = 1_800_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextlib.contextmanager
def stepped(**options: Any) -> Iterator[tuple[Emulator, Api, SteppedClock]]:
    clock = SteppedClock()
    with Emulator(compile_delay=0.0, clock=clock, **options) as emulator:
        api = Api(emulator)
        try:
            yield emulator, api, clock
        finally:
            api.http.close()


def test_authenticate(emulator: Emulator, api: Api) -> None:
    status, data = api.post("authenticate")
    assert status == 200 and data == {"success": True, "errors": []}
    url = f"{emulator.url}/authenticate"
    for sent in (
        {},
        headers(emulator.user_id, "0" * 64),
        headers("999", emulator.token),
        headers(emulator.user_id, emulator.token, int(time.time()) - AUTH_WINDOW - 60),
    ):
        refused = api.http.post(url, json={}, headers=sent)
        assert refused.status_code == 401 and refused.json()["success"] is False
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
    emulator.inject("authenticate", fail=1, status=503)
    assert [api.post("authenticate")[0] for _ in range(2)] == [503, 200]
    assert api.admin("faults", {"endpoint": "authenticate", "ratelimit": 1}).json()["success"]
    assert api.post("authenticate")[0] == 429
    calls = emulator.stats()["calls"]["authenticate"]
    assert calls["total"] == 8 and calls["401"] == 4 and calls["503"] == 1


def modified(api: Api, project_id: int) -> str:
    return str(api.ok("projects/read", {"projectId": project_id})["projects"][0]["modified"])


def test_touch_project_always_changes_the_rendered_modified(emulator: Emulator, api: Api) -> None:
    emulator.add_project(101)
    seen = [modified(api, 101)]
    for _ in range(3):  # well within one second: each touch still shows a new value
        touched = emulator.touch_project(101)
        assert modified(api, 101) == touched
        seen.append(touched)
    answer = api.admin("projects/touch", {"projectId": 101}).json()
    assert answer["success"] and answer["modified"] == modified(api, 101)
    seen.append(answer["modified"])
    assert seen == sorted(set(seen)) and len(seen) == 5  # strictly increasing
    assert api.ok("projects/read", {"projectId": 101})["projects"][0]["created"] == seen[0]
    with pytest.raises(ValueError, match="does not exist"):
        emulator.touch_project(999)
    unknown = api.admin("projects/touch", {"projectId": 999}).json()
    assert unknown["success"] is False and "999" in unknown["errors"][0]
    assert api.admin("projects/touch", {}).json()["success"] is False


def test_touch_project_follows_the_clock_when_it_is_ahead() -> None:
    with stepped() as (emulator, api, clock):
        emulator.add_project(1)
        assert modified(api, 1) == "2027-01-15T08:00:00Z"
        assert emulator.touch_project(1) == "2027-01-15T08:00:01Z"
        assert emulator.touch_project(1) == "2027-01-15T08:00:02Z"
        clock.advance(3600)
        assert emulator.touch_project(1) == "2027-01-15T09:00:00Z" == modified(api, 1)


def test_safety_statistics(emulator: Emulator, api: Api) -> None:
    compile_id = world(emulator)
    other_compile = world(emulator, 102)
    emulator.add_node(OTHER_NODE)
    empty = emulator.stats()
    assert (empty["created"], empty["stops"]) == ([], [])
    assert empty["rejections"] == {"project busy": 0, "node busy": 0, "other": 0}
    first = api.ok("live/create", create_body(101, compile_id))["deployId"]
    api.refused("live/create", create_body(101, compile_id, nodeId=OTHER_NODE))
    api.refused("live/create", create_body(102, other_compile))  # LIVE_NODE is busy
    api.refused("live/create", create_body(102, other_compile, versionId="1"))
    api.refused("live/create", create_body(102, "0-0", nodeId=OTHER_NODE))
    api.ok("live/update/stop", {"projectId": 101})
    emulator.inject("live/create", drop=1)  # committed, answer lost: still created
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("live/create", create_body(102, other_compile, nodeId=OTHER_NODE))
    second = api.ok("live/create", create_body(101, compile_id))["deployId"]
    api.ok("live/update/liquidate", {"projectId": 101})
    emulator.end(102, "Stopped", "stopped in the web IDE")  # not an API stop
    stats = emulator.stats()
    assert {"calls", "create_times", "creates_committed"} <= set(stats)
    assert stats["creates_committed"] == {"101": 2, "102": 1}
    created = stats["created"]
    assert all(set(c) == {"deployId", "projectId", "time"} for c in created)
    assert [c["projectId"] for c in created] == [101, 102, 101]
    assert created[0]["deployId"] == first and created[2]["deployId"] == second
    assert all(isinstance(c["time"], float) for c in created)
    assert [c["time"] for c in created] == sorted(c["time"] for c in created)
    assert [(s["deployId"], s["projectId"], s["status"]) for s in stats["stops"]] == [
        (first, 101, "Stopped"),
        (second, 101, "Liquidated"),
    ]
    assert all(set(s) == {"deployId", "projectId", "status", "time"} for s in stats["stops"])
    assert stats["stops"][0]["time"] >= created[0]["time"]
    assert stats["rejections"] == {"project busy": 1, "node busy": 1, "other": 2}
    rules = [r["rule"] for r in stats["rejected"]]
    assert sorted(rules) == ["node busy", "other", "other", "project busy"]
    assert all(r["error"] and "projectId" in r for r in stats["rejected"])
    over_http = api.admin("stats").json()
    for key in ("created", "stops", "rejections", "rejected"):
        assert over_http[key] == stats[key]


def test_startup_passes_through_inqueue_and_logging_in() -> None:
    with stepped(startup_delay=10.0) as (emulator, api, clock):
        compile_id = world(emulator)
        emulator.add_project(102)
        emulator.add_node(OTHER_NODE)
        other_compile = emulator.add_compile(102)
        created = api.ok("live/create", create_body(101, compile_id))
        assert created["live"]["status"] == "InQueue" and created["live"]["stopped"] is None
        deploy_id = created["deployId"]
        seen = []
        for step in (4.9, 0.2, 4.8, 0.1, 100):  # to 4.9, 5.1, 9.9, 10.0, 110.0 seconds
            read = api.ok("live/read", {"projectId": 101})
            (listed,) = api.ok("live/list", {"projectId": 101})["live"]
            assert read["status"] == listed["status"] and read["deployId"] == deploy_id
            assert read["stopped"] is None and read["message"] == ""
            seen.append(read["status"])
            if read["status"] != "Running":  # it holds its project and node throughout
                assert "already has" in api.refused(
                    "live/create", create_body(101, compile_id, nodeId=OTHER_NODE)
                )
                assert "busy" in api.refused("live/create", create_body(102, other_compile))
                assert api.ok("projects/read", {"projectId": 101})["projects"][0]["codeRunning"]
                nodes = api.ok("projects/nodes/read", {"projectId": 102})["nodes"]["live"]
                assert {n["id"]: n["busy"] for n in nodes} == {LIVE_NODE: True, OTHER_NODE: False}
                assert [d["deployId"] for d in emulator.active_deployments(101)] == [deploy_id]
                assert api.ok("live/list", {"status": "Running"})["live"] == []
            clock.advance(step)
        assert seen == ["InQueue", "InQueue", "LoggingIn", "LoggingIn", "Running"]
        assert [d["deployId"] for d in api.ok("live/list", {"status": "Running"})["live"]] == [
            deploy_id
        ]
        assert emulator.stats()["rejections"]["project busy"] == 4


def test_a_deployment_can_be_stopped_while_it_starts() -> None:
    with stepped(startup_delay=10.0) as (emulator, api, clock):
        compile_id = world(emulator)
        deploy_id = api.ok("live/create", create_body(101, compile_id))["deployId"]
        clock.advance(6)
        assert api.ok("live/read", {"projectId": 101})["status"] == "LoggingIn"
        api.ok("live/update/stop", {"projectId": 101})
        clock.advance(60)  # start-up never resumes once stopped
        read = api.ok("live/read", {"projectId": 101})
        assert (read["deployId"], read["status"]) == (deploy_id, "Stopped")
        assert emulator.stats()["stops"][0]["status"] == "Stopped"
        assert emulator.active_deployments() == []


def test_startup_with_the_real_clock() -> None:
    with Emulator(compile_delay=0.0, startup_delay=1.0) as emulator, httpx.Client() as http:
        api = Api(emulator)
        api.http = http
        compile_id = world(emulator)
        api.ok("live/create", create_body(101, compile_id))
        seen: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and seen[-1:] != ["Running"]:
            status = api.ok("live/read", {"projectId": 101})["status"]
            if seen[-1:] != [status]:
                seen.append(status)
            time.sleep(0.05)
        order = ["InQueue", "LoggingIn", "Running"]
        assert seen[-1] == "Running" and seen == [s for s in order if s in seen], seen


def test_default_startup_is_running_at_once(emulator: Emulator, api: Api) -> None:
    compile_id = world(emulator)
    assert api.ok("live/create", create_body(101, compile_id))["live"]["status"] == "Running"
    assert api.ok("live/read", {"projectId": 101})["status"] == "Running"
    with pytest.raises(ValueError, match="negative"):
        Emulator(startup_delay=-1)


def test_failed_brokerage_login_without_delay(emulator: Emulator, api: Api) -> None:
    emulator.add_project(101, name="p101", fail_login=True)
    emulator.add_node(LIVE_NODE)
    compile_id = emulator.add_compile(101)
    created = api.ok("live/create", create_body(101, compile_id))  # the create succeeds
    assert created["live"]["status"] == "Running" and created["live"]["message"] == ""
    read = api.ok("live/read", {"projectId": 101})
    assert read["deployId"] == created["deployId"] and read["status"] == "RuntimeError"
    assert read["message"].startswith("Brokerage login failed: ") and read["stopped"]
    (listed,) = api.ok("live/list")["live"]
    assert (listed["status"], listed["error"]) == ("RuntimeError", read["message"])
    assert listed["stopped"] == read["stopped"]
    failed = api.ok("live/list", {"status": "RuntimeError"})["live"]
    assert [d["deployId"] for d in failed] == [created["deployId"]]
    assert "no running" in api.refused("live/update/stop", {"projectId": 101})
    assert emulator.active_deployments() == [] and emulator.creates_committed(101) == 1
    nodes = api.ok("projects/nodes/read", {"projectId": 101})["nodes"]["live"]
    assert nodes[0]["busy"] is False and nodes[0]["projectId"] is None
    assert not api.ok("projects/read", {"projectId": 101})["projects"][0]["codeRunning"]
    emulator.add_project(102)  # the node is free again
    api.ok("live/create", create_body(102, emulator.add_compile(102)))
    assert api.ok("live/read", {"projectId": 102})["status"] == "Running"
    emulator.end(102, "Stopped")
    emulator.update_project(101, fail_login=False)  # credentials fixed: the next one runs
    again = api.ok("live/create", create_body(101, compile_id))["deployId"]
    assert emulator.active_deployments(101)[0]["deployId"] == again
    assert emulator.stats()["rejections"] == {"project busy": 0, "node busy": 0, "other": 0}


def test_failed_brokerage_login_after_the_startup_delay() -> None:
    with stepped(startup_delay=4.0) as (emulator, api, clock):
        emulator.add_project(101, fail_login="IB account DU1 is locked")
        emulator.add_node(LIVE_NODE)
        compile_id = emulator.add_compile(101)
        created = api.ok("live/create", create_body(101, compile_id))
        assert created["live"]["status"] == "InQueue"
        seen = []
        for _ in range(3):
            read = api.ok("live/read", {"projectId": 101})
            seen.append((read["status"], read["message"], read["stopped"]))
            clock.advance(2)
        message = "Brokerage login failed: IB account DU1 is locked"
        assert seen == [
            ("InQueue", "", None),
            ("LoggingIn", "", None),
            ("RuntimeError", message, "2027-01-15T08:00:04Z"),  # when the login failed
        ]
        (listed,) = api.ok("live/list")["live"]
        assert (listed["status"], listed["error"]) == ("RuntimeError", message)


def test_fail_login_from_seed_admin_and_python(emulator: Emulator, api: Api) -> None:
    emulator.seed(
        {
            "projects": [
                {"projectId": 1, "failLogin": True},
                {"projectId": 2, "failLogin": "two-factor timed out"},
                {"projectId": 3},
            ]
        }
    )
    projects = emulator.world.projects
    assert projects[1]["failLogin"].startswith("Brokerage login failed: ")
    assert projects[2]["failLogin"] == "Brokerage login failed: two-factor timed out"
    assert projects[3]["failLogin"] == ""
    answer = api.admin("projects/update", {"projectId": 3, "failLogin": "bad password"})
    assert answer.json() == {"success": True, "errors": []}
    assert projects[3]["failLogin"] == "Brokerage login failed: bad password"
    assert api.admin("projects/update", {"projectId": 3, "failLogin": False}).json()["success"]
    assert projects[3]["failLogin"] == ""
    assert api.admin("projects/update", {"projectId": 3, "failBuild": True}).json()["success"]
    assert projects[3]["failBuild"] is True and projects[3]["failLogin"] == ""
    for body, reason in [
        ({"projectId": 99, "failLogin": True}, "99"),
        ({"projectId": 3, "failLogin": 3}, "failLogin"),
        ({"projectId": 3, "failLogin": ""}, "failLogin"),
        ({"projectId": 3, "failBuild": "yes"}, "failBuild"),
        ({"projectId": 3, "colour": "red"}, "colour"),
    ]:
        refused = api.admin("projects/update", body).json()
        assert refused["success"] is False and reason in refused["errors"][0], body
    for bad in (3, "", [True]):
        with pytest.raises(ValueError, match="failLogin"):
            emulator.add_project(4, fail_login=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="failLogin"):
        emulator.seed({"projects": [{"projectId": 5, "failLogin": 1.5}]})
    assert "failLogin" not in api.ok("projects/read", {"projectId": 1})["projects"][0]


def test_fail_login_persists_with_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Emulator(data_dir=str(data), compile_delay=0) as emulator:
        emulator.add_project(5, fail_login="expired token")
        emulator.add_project(6)
        emulator.update_project(6, fail_login=True)
        emulator.add_node(LIVE_NODE)
        compile_id = emulator.add_compile(5)
        with httpx.Client() as http:
            api = Api(emulator)
            api.http = http
            api.ok("live/create", create_body(5, compile_id))
    with Emulator(data_dir=str(data)) as again, httpx.Client() as http:
        api = Api(again)
        api.http = http
        assert again.world.projects[5]["failLogin"] == "Brokerage login failed: expired token"
        assert again.world.projects[6]["failLogin"].startswith("Brokerage login failed")
        read = api.ok("live/read", {"projectId": 5})
        assert (read["status"], read["message"]) == (
            "RuntimeError",
            "Brokerage login failed: expired token",
        )
        assert again.active_deployments() == []


@pytest.mark.parametrize(
    "status",
    ["Stopped", "Liquidated", "RuntimeError", "Completed", "Deleted", "DeployError", "Invalid"],
)
def test_end_a_deployment_behind_the_clients_back(
    emulator: Emulator, api: Api, status: str
) -> None:
    compile_id = world(emulator)
    deploy_id = api.ok("live/create", create_body(101, compile_id))["deployId"]
    assert emulator.end(101, status, f"ended: {status}") == deploy_id
    read = api.ok("live/read", {"projectId": 101})
    assert (read["deployId"], read["status"], read["message"]) == (
        deploy_id,
        status,
        f"ended: {status}",
    )
    assert read["stopped"] is not None
    (listed,) = api.ok("live/list")["live"]
    assert (listed["status"], listed["error"]) == (status, f"ended: {status}")
    assert emulator.active_deployments() == [] and emulator.stats()["stops"] == []
    again = api.ok("live/create", create_body(101, compile_id))["deployId"]  # project free
    answer = api.admin("live/end", {"projectId": 101, "status": status}).json()
    assert answer == {"success": True, "errors": [], "deployId": again}
    assert api.ok("live/read", {"projectId": 101})["status"] == status


def test_end_refuses_what_it_cannot_do(emulator: Emulator, api: Api) -> None:
    compile_id = world(emulator)
    with pytest.raises(ValueError, match="no running"):
        emulator.end(101, "Stopped")
    api.ok("live/create", create_body(101, compile_id))
    for status in ("Running", "InQueue", "Exploded", ""):
        with pytest.raises(ValueError, match="status must be one of"):
            emulator.end(101, status)
    for body in (
        {"projectId": 101},
        {"projectId": 101, "status": "Running"},
        {"projectId": 101, "status": "Stopped", "message": 7},
        {"projectId": 999, "status": "Stopped"},
    ):
        answer = api.admin("live/end", body).json()
        assert answer["success"] is False and answer["errors"], body
    assert api.ok("live/read", {"projectId": 101})["status"] == "Running"
    assert emulator.kill(101) and api.ok("live/read", {"projectId": 101})["status"] == (
        "RuntimeError"
    )


def test_nodes_read_reports_who_uses_a_busy_node(emulator: Emulator, api: Api) -> None:
    compile_id = world(emulator)
    emulator.add_project(102, name="p102")
    emulator.add_node(OTHER_NODE)
    api.ok("live/create", create_body(101, compile_id))
    for asking in (101, 102):  # the same picture from any project
        nodes = api.ok("projects/nodes/read", {"projectId": asking})["nodes"]["live"]
        by_id = {n["id"]: n for n in nodes}
        busy, free = by_id[LIVE_NODE], by_id[OTHER_NODE]
        assert busy["busy"] is True and busy["usedBy"] == emulator.user_id
        assert (busy["projectId"], busy["projectName"]) == (101, "p101")
        assert free["busy"] is False
        # A free node has every field a strict client needs: nobody, no project.
        assert (free["usedBy"], free["userProfile"], free["projectName"]) == ("", "", "")
        assert free["projectId"] is None
    api.ok("live/update/stop", {"projectId": 101})
    nodes = api.ok("projects/nodes/read", {"projectId": 101})["nodes"]["live"]
    assert all(n["busy"] is False and n["usedBy"] == "" for n in nodes)


# ---- both methods, the organisation, complete responses (issue 15) --------------------------


def test_every_read_answers_get_as_it_answers_post(emulator: Emulator, api: Api) -> None:
    compile_id = world(emulator)
    emulator.add_project(102, name="p102")
    api.ok("live/create", create_body(101, compile_id))
    organization = api.ok("projects/read")["projects"][0]["organizationId"]
    requests: list[tuple[str, dict[str, Any]]] = [
        ("authenticate", {}),
        ("projects/read", {}),
        ("projects/read", {"projectId": 102}),
        ("projects/read", {"start": 1, "end": 2}),
        ("projects/read", {"organizationId": organization}),
        ("projects/read", {"projectId": 99}),
        ("projects/read", {"projectId": "two"}),
        ("projects/nodes/read", {"projectId": 101}),
        ("projects/nodes/read", {}),
        ("nodes/read", {"organizationId": organization}),
        ("compile/read", {"projectId": 101, "compileId": compile_id}),
        ("compile/read", {"projectId": 102, "compileId": compile_id}),
        ("live/read", {"projectId": 101}),
        ("live/read", {"projectId": 102}),
        ("live/list", {}),
        ("live/list", {"projectId": 101, "status": "Running"}),
        ("live/list", {"status": "Deleted"}),
        ("lean/versions/read", {}),
        ("files/read", {"projectId": 101}),
        ("files/read", {"projectId": 101, "name": "nope.py"}),
    ]
    refused = []
    for endpoint, body in requests:
        posted = api.post(endpoint, body)
        assert api.get(endpoint, body) == posted, (endpoint, body)
        if not posted[1]["success"]:
            refused.append(posted[1]["errors"][0])
    assert len(refused) == 7 and "projectId must be an integer" in refused
    assert "File nope.py not found in project 101." in refused
    assert emulator.stats()["methods"]["live/read"] == {"POST": 2, "GET": 2}
    assert set(READS) == {endpoint for endpoint, _ in requests}


def test_get_has_the_same_authentication_and_faults(emulator: Emulator, api: Api) -> None:
    url = f"{emulator.url}/live/list"
    stale = int(time.time()) - AUTH_WINDOW - 60
    for sent in (
        {},
        headers(emulator.user_id, "0" * 64),
        headers("999", emulator.token),
        headers(emulator.user_id, emulator.token, stale),
    ):
        refused = api.http.get(url, params={"projectId": 1}, headers=sent)
        assert refused.status_code == 401 and refused.json()["success"] is False
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
    emulator.inject("live/list", fail=1, status=503)
    assert [api.get("live/list")[0] for _ in range(2)] == [503, 200]
    emulator.inject("live/list", ratelimit=1, retry_after=3)
    limited = api.http.get(url, headers=headers(emulator.user_id, emulator.token))
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    emulator.inject("live/list", drop_before=1)
    with pytest.raises(httpx.RemoteProtocolError):
        api.get("live/list")
    calls = emulator.stats()["calls"]["live/list"]
    assert calls == {"total": 8, "401": 4, "503": 1, "200": 1, "429": 1, "dropped": 1}


def test_get_never_changes_state(emulator: Emulator, api: Api) -> None:
    compile_id = world(emulator)
    api.ok("live/create", create_body(101, compile_id))
    auth = headers(emulator.user_id, emulator.token)
    for endpoint, params in (
        ("live/update/stop", {"projectId": 101}),
        ("live/update/liquidate", {"projectId": 101}),
        ("live/create", {"projectId": 101, "compileId": compile_id, "nodeId": LIVE_NODE}),
        ("compile/create", {"projectId": 101}),
        ("projects/nodes/update", {"projectId": 101, "nodes": [LIVE_NODE]}),
    ):
        answer = api.http.get(f"{emulator.url}/{endpoint}", params=params, headers=auth)
        assert answer.status_code == 405 and answer.headers["Allow"] == "POST", endpoint
        assert answer.json() == {
            "success": False,
            "errors": [f"{endpoint} changes state: use POST, not GET."],
        }
    assert api.ok("live/read", {"projectId": 101})["status"] == "Running"
    assert api.ok("projects/nodes/read", {"projectId": 101})["autoSelectNode"] is True
    admin = emulator.url.replace("/api/v2", "/_emulator")
    stats = api.http.get(f"{admin}/stats", headers=auth).json()  # the admin's one read
    assert stats["success"] is True and stats["stops"] == [] and len(stats["created"]) == 1
    kill = api.http.get(f"{admin}/live/kill", params={"projectId": 101}, headers=auth)
    assert kill.status_code == 405 and kill.headers["Allow"] == "POST"
    assert api.ok("live/read", {"projectId": 101})["status"] == "Running"


def test_post_takes_form_bodies_typed_as_json_bodies(emulator: Emulator, api: Api) -> None:
    compile_id = world(emulator)
    emulator.add_node(OTHER_NODE)
    status, chosen = api.form("projects/nodes/update", {"projectId": "101", "nodes": [LIVE_NODE]})
    assert status == 200 and chosen["success"] and chosen["autoSelectNode"] is False
    assert {n["id"]: n["active"] for n in chosen["nodes"]["live"]} == {
        LIVE_NODE: True,
        OTHER_NODE: False,
    }
    cleared = api.form("projects/nodes/update", {"projectId": "101", "nodes": ""})[1]
    assert cleared["autoSelectNode"] is True
    fields = {
        "projectId": "101",
        "compileId": compile_id,
        "nodeId": LIVE_NODE,
        "versionId": "-1",
        "brokerage": json.dumps(PAPER),
        "automaticRedeploy": "True",  # as `requests` writes a Python True
    }
    status, created = api.form("live/create", fields)
    assert status == 200 and created["success"] and created["live"]["status"] == "Running"
    project = api.ok("projects/read", {"projectId": 101})["projects"][0]
    assert project["liveForm"]["autoRestart"] == "true"
    assert api.form("live/update/stop", {"projectId": 101})[1]["success"] is True
    assert api.ok("live/read", {"projectId": 101})["status"] == "Stopped"
    # A value that does not convert is refused as the same value in JSON is.
    typed = {**create_body(101, compile_id), "automaticRedeploy": True}
    assert api.form("live/read", {"projectId": "x"}) == api.post("live/read", {"projectId": "x"})
    for text in ("QuantConnectBrokerage", "[1, 2]"):
        refused = api.form("live/create", {**fields, "brokerage": text})
        assert refused == api.post("live/create", {**typed, "brokerage": text}), text
        assert refused[1]["errors"] == ["brokerage: expected an object"]
    # Two values for a one-value field: which one was meant cannot be known.
    for status, answer in (
        api.form("live/read", {"projectId": ["101", "102"]}),
        api.get("live/read", {"projectId": ["101", "102"]}),
    ):
        assert status == 400 and "projectId is given 2 times" in answer["errors"][0]
    admin = emulator.url.replace("/api/v2", "/_emulator/projects/update")
    auth = headers(emulator.user_id, emulator.token)
    updated = api.http.post(admin, data={"projectId": "101", "failBuild": "true"}, headers=auth)
    assert updated.json()["success"] is True
    assert api.ok("compile/create", {"projectId": 101})["state"] == "BuildError"


def test_query_and_form_fields_are_typed_in_one_place() -> None:
    assert parse_fields("projectId=7&start=-1&compileId=00&name=a+b") == {
        "projectId": 7,
        "start": -1,
        "compileId": "00",
        "name": "a b",
    }
    assert parse_fields("projectId=7.0&end=") == {"projectId": "7.0", "end": ""}
    assert parse_fields("automaticRedeploy=True&failBuild=0&failLogin=bad+password") == {
        "automaticRedeploy": True,
        "failBuild": False,
        "failLogin": "bad password",
    }
    for text in ("nodes=a&nodes=b", "nodes[]=a&nodes[]=b", 'nodes=["a", "b"]'):
        assert parse_fields(text) == {"nodes": ["a", "b"]}, text
    assert parse_fields("nodes=") == {"nodes": []}
    assert parse_fields('brokerage={"id":"X"}&dataProviders=[1]') == {
        "brokerage": {"id": "X"},
        "dataProviders": "[1]",
    }
    with pytest.raises(ValueError, match="projectId is given 2 times"):
        parse_fields("projectId=1&projectId=2")
    with pytest.raises(ValueError):
        parse_fields("name=%ff")


def test_one_organisation_with_a_stable_id(emulator: Emulator, api: Api) -> None:
    compile_id = world(emulator)
    emulator.add_project(102, name="p102")
    emulator.add_node(OTHER_NODE)
    api.ok("live/create", create_body(101, compile_id))
    projects = api.ok("projects/read")["projects"]
    organization = projects[0]["organizationId"]
    assert {p["organizationId"] for p in projects} == {organization}
    assert len(organization) == 32 and int(organization, 16) >= 0
    with Emulator(user_id=emulator.user_id, token=emulator.token) as again:
        assert again.world.organization == organization  # the same on every start
    assert Emulator(user_id="1").world.organization != organization
    mine = api.ok("projects/read", {"organizationId": organization})["projects"]
    assert [p["projectId"] for p in mine] == [101, 102]
    both = {"organizationId": organization, "projectId": 102}  # how lean-cli reads one
    assert [p["name"] for p in api.ok("projects/read", both)["projects"]] == ["p102"]
    other = "0" * 32
    for endpoint in ("projects/read", "nodes/read"):
        message = api.refused(endpoint, {"organizationId": other})
        assert message == (
            f"Organization {other} not found; this account's organization is {organization}."
        )
    assert api.refused("nodes/read") == "organizationId is required"
    nodes = api.ok("nodes/read", {"organizationId": organization})
    assert (nodes["backtest"], nodes["research"]) == ([], [])
    by_id = {n["id"]: n for n in nodes["live"]}
    assert set(by_id) == {LIVE_NODE, OTHER_NODE}
    busy, free = by_id[LIVE_NODE], by_id[OTHER_NODE]
    assert (busy["busy"], busy["usedBy"], busy["projectName"], busy["projectId"]) == (
        True,
        emulator.user_id,
        "p101",
        101,
    )
    assert (free["busy"], free["usedBy"], free["projectName"], free["projectId"]) == (
        False,
        "",
        "",
        None,
    )
    assert busy["active"] is False and free["active"] is False  # no project asked


FIXTURE = Path(__file__).parent / "fixtures" / "openapi_responses.json"
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}
# Where the emulator answers null: a live field before any deployment, a running deployment's
# `stopped` (the spec: "null if it's still running"), the project of a node nobody uses, and
# `encryptionKey` (no project is encrypted).
NULLABLE = {
    "projects/read": {
        "projects[].lastLiveDeployment",
        "projects[].liveForm",
        "projects[].encryptionKey",
    },
    "projects/nodes/read": {"nodes.live[].projectId"},
    "projects/nodes/update": {"nodes.live[].projectId"},
    "nodes/read": {"live[].projectId"},
    "live/create": {"live.stopped"},
    "live/read": {"stopped"},
    "live/list": {"live[].stopped"},
}
# What no answer here shows: arrays the emulator keeps empty (no library projects, no
# parameters detected by a compile, live nodes only) and the null encryptionKey.
NEVER_SHOWN = {
    "projects/read": ("projects[].libraries[]", "projects[].encryptionKey"),
    "projects/nodes/read": ("nodes.backtest[]", "nodes.research[]"),
    "projects/nodes/update": ("nodes.backtest[]", "nodes.research[]"),
    "nodes/read": ("backtest[]", "research[]"),
    "compile/create": ("parameters[]",),
    "live/create": ("live.stopped",),
    "live/list": ("live[].leagues[]",),  # enrolled in no Quant League
}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _shape_paths(shape: dict[str, Any], path: str = "") -> set[str]:
    paths = {path} if path else set()
    for name, sub in shape.get("properties", {}).items():
        paths |= _shape_paths(sub, _join(path, name))
    if "items" in shape:
        paths |= _shape_paths(shape["items"], f"{path}[]")
    return paths


def _shape_problems(
    value: Any, shape: dict[str, Any], path: str, nullable: set[str], shown: set[str]
) -> list[str]:
    """What in `value` breaks `shape` (a missing property, a wrong type, a value outside
    its enum, a date that is not one); `shown` gathers the paths seen with a value."""
    if value is None:
        return [] if path in nullable else [f"{path}: null"]
    if "anyOf" in shape:
        if any(not _shape_problems(value, s, path, nullable, set()) for s in shape["anyOf"]):
            shown.add(path)
            return []
        return [f"{path}: {value!r} matches none of {shape['anyOf']}"]
    shown.add(path)
    kind = shape["type"]
    if isinstance(value, bool) is not (kind == "boolean") or not isinstance(
        value, JSON_TYPES[kind]
    ):
        return [f"{path}: {type(value).__name__}, not {kind}"]
    problems = []
    if "enum" in shape and value not in shape["enum"]:
        problems.append(f"{path}: {value!r} is not one of {shape['enum']}")
    if shape.get("format") == "date-time":
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"{path}: {value!r} is not a date-time")
    for name, sub in shape.get("properties", {}).items():
        if name not in value:
            problems.append(f"{_join(path, name)}: missing")
        else:
            problems += _shape_problems(value[name], sub, _join(path, name), nullable, shown)
    for item in value if kind == "array" and "items" in shape else ():
        problems += _shape_problems(item, shape["items"], f"{path}[]", nullable, shown)
    return problems


def test_every_answer_has_every_property_the_spec_defines(emulator: Emulator, api: Api) -> None:
    """Strict clients (lean-cli parses answers into pydantic models) need every property the
    OpenAPI document defines for a 200, typed as it says. The shapes come from the document,
    through tests/fixtures/openapi_responses.json (its source and generator are named there)."""
    fixture = json.loads(FIXTURE.read_text(encoding="utf-8"))
    shapes = {endpoint: item["shape"] for endpoint, item in fixture["endpoints"].items()}
    rest = fixture["schemas"]["RestResponse"]
    # Not in the document: authenticate answers the bare envelope; nodes/read, lean-cli's
    # read of the organisation's nodes, answers ProjectNodes' lists at the top level.
    assert fixture["not_in_spec"] == ["authenticate", "nodes/read"]
    shapes["authenticate"] = rest
    nodes = shapes["projects/nodes/read"]["properties"]["nodes"]["properties"]
    shapes["nodes/read"] = {"type": "object", "properties": {**nodes, **rest["properties"]}}
    assert set(shapes) == set(ROUTES)  # a new endpoint needs the fixture regenerated

    compile_id = world(emulator)
    emulator.add_project(102, name="p102", language="C#", description="never deployed")
    emulator.add_node(OTHER_NODE)
    answers: dict[str, list[Any]] = {endpoint: [] for endpoint in shapes}

    def call(endpoint: str, body: dict[str, Any]) -> Any:
        status, data = api.get(endpoint, body) if endpoint in READS else api.post(endpoint, body)
        assert status == 200 and data["success"] is True, (endpoint, data)
        answers[endpoint].append(data)
        return data

    call("authenticate", {})
    call("lean/versions/read", {})
    built = call("compile/create", {"projectId": 102})
    call("compile/read", {"projectId": 102, "compileId": built["compileId"]})
    call("live/create", create_body(101, compile_id))
    call("projects/nodes/update", {"projectId": 101, "nodes": [LIVE_NODE]})  # one busy
    call("live/read", {"projectId": 101})  # running: stopped is null
    organization = call("projects/read", {})["projects"][0]["organizationId"]
    call("projects/nodes/read", {"projectId": 101})
    call("nodes/read", {"organizationId": organization})
    call("live/update/stop", {"projectId": 101})
    call("live/read", {"projectId": 101})  # stopped
    call("live/create", create_body(101, compile_id))
    call("live/update/liquidate", {"projectId": 101})
    call("live/create", create_body(101, compile_id))
    call("live/list", {})
    call("files/read", {"projectId": 101})
    call("files/read", {"projectId": 102, "name": "Main.cs"})
    for endpoint, shape in shapes.items():
        shown: set[str] = set()
        problems = [
            problem
            for answer in answers[endpoint]
            for problem in _shape_problems(answer, shape, "", NULLABLE.get(endpoint, set()), shown)
        ]
        assert problems == [], (endpoint, problems)
        unseen = _shape_paths(shape) - shown
        allowed = ("errors[]", *NEVER_SHOWN.get(endpoint, ()))  # a success has no errors
        assert {p for p in unseen if not p.startswith(allowed)} == set(), endpoint


def test_access_log_and_statistics_name_the_method() -> None:
    lines: list[str] = []
    with Emulator(compile_delay=0, access_log=lines.append) as emulator:
        api = Api(emulator)
        try:
            api.get("live/list")
            api.post("live/list")
            api.get("live/update/stop", {"projectId": 1})
        finally:
            api.http.close()
        assert emulator.stats()["methods"] == {
            "live/list": {"GET": 1, "POST": 1},
            "live/update/stop": {"GET": 1},
        }
    assert [line.split()[:3] for line in lines] == [
        ["GET", "/live/list", "200"],
        ["POST", "/live/list", "200"],
        ["GET", "/live/update/stop", "405"],
    ]


def test_files_read_answers_the_projects_file_or_the_one_named(api: Api) -> None:
    api.emulator.add_project(7, name="py")
    api.emulator.add_project(8, name="cs", language="C#")
    status, data = api.get("files/read", {"projectId": 7})
    assert status == 200 and [f["name"] for f in data["files"]] == ["main.py"]
    assert "class" in data["files"][0]["content"] and data["files"][0]["projectId"] == 7
    assert api.post("files/read", {"projectId": 7}) == (status, data)  # GET as POST
    status, data = api.get("files/read", {"projectId": 8, "name": "Main.cs"})
    assert status == 200 and [f["name"] for f in data["files"]] == ["Main.cs"]
    for body, error in (
        ({"projectId": 8, "name": "main.py"}, "File main.py not found in project 8."),
        ({"projectId": 9}, "Project 9 not found."),
        ({}, "projectId is required"),
    ):
        status, data = api.get("files/read", body)
        assert (status, data["success"], data["errors"]) == (200, False, [error])


@pytest.mark.parametrize("sent", [b"", b'{"projectId": 101, "compileId"'])
def test_a_body_cut_short_is_no_request(emulator: Emulator, sent: bytes) -> None:
    # A client killed while sending (the campaign's kill -9) leaves fewer bytes than its
    # Content-Length: that is no request at all. An empty remainder once passed for `{}`
    # and reached live/create, which refused it ("projectId is required").
    compile_id = world(emulator)
    full = json.dumps(create_body(101, compile_id)).encode()
    host, port = emulator.url.split("//")[1].split("/")[0].split(":")
    head = (
        "POST /api/v2/live/create HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(full)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers(emulator.user_id, emulator.token).items())
        + "\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head + sent)
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(1024) == b""  # closed without an answer
    stats = emulator.stats()
    assert stats["rejections"] == {"project busy": 0, "node busy": 0, "other": 0}
    assert stats["created"] == [] and stats["create_times"] == []
    assert emulator.active_deployments(101) == []
