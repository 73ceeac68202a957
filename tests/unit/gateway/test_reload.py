"""Config reload: what a new config changes, whole-or-nothing swaps, POST /admin/reload, SIGHUP, and the connector
hooks a reload uses (window resize, settling connectors). No sockets: connectors are built but never run, and
the HTTP app is reached through httpx's ASGI transport."""

from __future__ import annotations

import copy
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import yaml

from gateway._cli_run import watch_signals
from gateway._config import Config, hash_api_key, parse_config
from gateway._connector import SessionInfo, _Live
from gateway._daemon import Gateway
from gateway._http import create_app
from gateway._reload import CONNECTION_FIELDS, ReloadPlan, needs_rebind, plan_reload
from gateway._systemd import Notifier

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


ADMIN_KEY = "admin-secret"

BASE: dict[str, Any] = {
    "http": {"listen": "127.0.0.1:8080", "admin_keys": [{"sha256": hash_api_key(ADMIN_KEY)}]},
    "store": {"path": "gw.db"},
    "accounts": [{"id": "acme", "api_keys": [{"sha256": hash_api_key("old-key")}]}],
    "smscs": [
        {"name": "a", "system_id": "a", "password": "pa", "window": 10, "throughput_per_s": 100},
        {"name": "b", "system_id": "b", "password": "pb"},
        {"name": "d", "host": "10.0.0.1", "system_id": "d", "password": "pd"},
    ],
    "routes": [{"name": "all", "prefix": "", "smscs": ["a"]}],
}


def changed(**sections: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(sections))
    return data


def cfg(data: dict[str, Any], base: Path | str = ".") -> Config:
    return parse_config(data, base_dir=base)


# ---- what a reload changes ---------------------------------------------------------------------------------


def test_connection_settings_need_a_rebind_the_others_do_not() -> None:
    old = cfg(BASE).smsc("a")
    new_values = {"host": "10.1.1.1", "port": 2776, "system_id": "other", "password": "new", "system_type": "VMA",
                  "bind": "tx", "sessions": 2}
    assert set(new_values) == set(CONNECTION_FIELDS)
    for key, value in new_values.items():
        data = changed()
        data["smscs"][0][key] = value
        assert needs_rebind(old, cfg(data).smsc("a")), key
    for key, value in {"window": 50, "throughput_per_s": 5, "response_timeout_s": 3, "enquire_link_interval_s": 9,
                       "concatenation": "sar", "registered_delivery": False}.items():
        data = changed()
        data["smscs"][0][key] = value
        assert not needs_rebind(old, cfg(data).smsc("a")), key


def test_plan_sorts_smscs_and_sections() -> None:
    data = changed(routes=[{"name": "all", "prefix": "", "smscs": ["b", "c"]}])
    data["smscs"][0]["window"] = 20  # a: changed in place
    data["smscs"] = [s for s in data["smscs"] if s["name"] != "d"]  # d: removed
    data["smscs"] += [{"name": "c", "system_id": "c", "password": "pc"},  # c and e: added
                      {"name": "e", "system_id": "e", "password": "pe"}]
    old, new = cfg(BASE), cfg(data)
    effective, plan = plan_reload(old, new)
    assert effective == new
    assert plan == ReloadPlan(sections=("smscs", "routes"), added=("c", "e"), removed=("d",), rebound=(),
                              updated=("a",), restart_required=())
    assert "SMSCs added: c, e" in plan.describe() and "updated in place: a" in plan.describe()

    data = changed()
    data["smscs"][2]["port"] = 2999
    _, plan = plan_reload(old, cfg(data))
    assert plan.rebound == ("d",) and plan.updated == () and plan.sections == ("smscs",)


def test_restart_only_settings_keep_their_running_values() -> None:
    old = cfg(BASE)
    new = cfg(changed(http={"listen": "127.0.0.1:9999", "admin_keys": [], "max_body_bytes": 1000},
                      store={"path": "elsewhere.db"}))
    effective, plan = plan_reload(old, new)
    assert plan.restart_required == ("http.listen", "store")
    assert effective.http.listen == "127.0.0.1:8080" and effective.store == old.store
    # The rest of those sections is live.
    assert effective.http.max_body_bytes == 1000 and effective.http.admin_keys == []
    assert plan.sections == ("http",)


def test_an_identical_file_changes_nothing() -> None:
    _, plan = plan_reload(cfg(BASE), cfg(BASE))
    assert plan == ReloadPlan()


# ---- the Reloader over a gateway that is not serving -------------------------------------------------------


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "gateway.yaml"
        self.write(BASE)
        self.sent: list[bytes] = []
        self.gw = Gateway(parse_config(BASE, base_dir=tmp_path), config_path=self.path)
        self.gw.notifier = Notifier("/test", transport=self.sent.append)

    def write(self, data: dict[str, Any] | str) -> None:
        self.path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))

    def notices(self) -> list[dict[str, str]]:
        return [dict(line.split("=", 1) for line in d.decode().splitlines()) for d in self.sent]

    def reload_metric(self) -> str:
        text = self.gw.metrics.render().decode()
        return next(line for line in text.splitlines() if line.startswith("smppgw_config_last_reload_successful "))


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


async def test_a_valid_file_is_swapped_in_everywhere(rig: Rig) -> None:
    gw = rig.gw
    rig.write(changed(accounts=[{"id": "acme", "api_keys": [{"sha256": hash_api_key("new-key")}],
                                 "rate_limit_per_s": 5}],
                      routes=[{"name": "all", "prefix": "", "smscs": ["b"]}]))
    outcome = await gw.reloader.reload()
    assert outcome.ok and outcome.plan is not None
    assert outcome.plan.sections == ("accounts", "routes")
    assert gw.core.config is gw.config  # one running config for every component
    assert gw.config.account("acme") is not None and gw.config.account("acme").rate_limit_per_s == 5  # type: ignore[union-attr]
    assert gw.core.router.decide("447700900123").route.smscs == ("b",)  # type: ignore[union-attr]
    assert rig.reload_metric() == "smppgw_config_last_reload_successful 1.0"
    notes = rig.notices()
    assert [n.get("RELOADING") or n.get("READY") for n in notes] == ["1", "1"]
    assert "RELOADING" in notes[0] and int(notes[0]["MONOTONIC_USEC"]) > 0
    assert "READY" in notes[1] and "binds up" in notes[1]["STATUS"]


async def test_an_invalid_file_is_refused_whole(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    gw = rig.gw
    before = gw.config
    router = gw.core.router
    # A valid change (accounts) next to an invalid one (an unknown SMSC): nothing of it is taken.
    rig.write(changed(accounts=[], routes=[{"name": "all", "prefix": "", "smscs": ["nope"]}]))
    with caplog.at_level("ERROR", logger="gateway._reload"):
        outcome = await gw.reloader.reload()
    assert not outcome.ok and outcome.code == "config_invalid" and outcome.field == "routes[0]"
    assert outcome.error.startswith("routes[0]: unknown SMSC 'nope'")
    assert gw.config is before and gw.core.config is before and gw.core.router is router
    assert rig.reload_metric() == "smppgw_config_last_reload_successful 0.0"
    assert any("routes[0]: unknown SMSC 'nope'" in r.getMessage() for r in caplog.records)
    notes = rig.notices()
    assert "RELOADING" in notes[0] and notes[1]["READY"] == "1"
    assert "last reload refused: routes[0]: unknown SMSC 'nope'" in notes[1]["STATUS"]
    # A YAML syntax error is refused the same way, naming the file.
    rig.write("routes: [\n")
    outcome = await gw.reloader.reload()
    assert not outcome.ok and str(rig.path) in outcome.error and "invalid YAML" in outcome.error
    # Fixing the file clears the refusal.
    rig.write(BASE)
    assert (await gw.reloader.reload()).ok
    assert rig.reload_metric() == "smppgw_config_last_reload_successful 1.0"
    assert gw.reloader.last_error is None


async def test_the_command_line_listen_survives_a_reload(rig: Rig) -> None:
    gw = rig.gw
    gw.config = gw.core.config = msgspec.structs.replace(
        gw.config, http=msgspec.structs.replace(gw.config.http, listen="127.0.0.1:0"))
    gw.reloader.override = lambda c: msgspec.structs.replace(c, http=msgspec.structs.replace(c.http,
                                                                                             listen="127.0.0.1:0"))
    outcome = await gw.reloader.reload()
    assert outcome.ok and outcome.plan is not None and outcome.plan.restart_required == ()
    assert gw.config.http.listen == "127.0.0.1:0"


async def test_no_reload_while_draining_or_without_a_file(tmp_path: Path) -> None:
    gw = Gateway(parse_config(BASE, base_dir=tmp_path))
    outcome = await gw.reloader.reload()
    assert not outcome.ok and outcome.code == "no_config_file"
    gw.draining = True
    assert (await gw.reloader.reload()).code == "draining"


# ---- POST /admin/reload -------------------------------------------------------------------------------------


@pytest.fixture
async def admin(rig: Rig) -> AsyncIterator[Callable[..., Any]]:
    app = create_app(rig.gw)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as client:
        async def post(key: str | None = ADMIN_KEY) -> httpx.Response:
            headers = {} if key is None else {"Authorization": f"Bearer {key}"}
            return await client.post("/admin/reload", headers=headers)
        yield post


async def test_admin_reload_needs_an_admin_key(rig: Rig, admin: Callable[..., Any]) -> None:
    for key in (None, "old-key", "wrong"):  # an account's API key is not an admin key
        r = await admin(key)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert rig.sent == []  # nothing was reloaded


async def test_admin_reload_answers_what_changed_or_why_not(rig: Rig, admin: Callable[..., Any]) -> None:
    rig.write(changed(routes=[{"name": "all", "prefix": "", "smscs": ["b"]}]))
    r = await admin()
    assert r.status_code == 200
    assert r.json() == {"reloaded": True, "config": str(rig.path), "changes": {
        "sections": ["routes"], "smscs": {"added": [], "removed": [], "rebound": [], "updated": []},
        "restart_required": []}}
    rig.write(changed(smscs=[{"name": "a", "system_id": "a", "password": "pa", "window": "ten"}]))
    r = await admin()
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "config_invalid" and err["field"] == "smscs[0].window"
    assert err["message"].startswith("smscs[0].window: ")
    rig.gw.draining = True
    r = await admin()
    assert r.status_code == 503 and r.json()["error"]["code"] == "draining"


async def test_admin_keys_change_with_the_reload(rig: Rig, admin: Callable[..., Any]) -> None:
    rig.write(changed(http={"admin_keys": [{"sha256": hash_api_key("rotated")}]}))
    assert (await admin()).status_code == 200
    assert (await admin()).status_code == 401  # the old key is gone
    assert (await admin("rotated")).status_code == 200


# ---- SIGHUP -------------------------------------------------------------------------------------------------


async def _signals(*signums: int) -> AsyncIterator[int]:
    for s in signums:
        yield s


async def test_sighup_asks_for_a_reload_until_the_drain_begins() -> None:
    stop = anyio.Event()
    reloads: list[int] = []
    exits: list[int] = []
    await watch_signals(_signals(signal.SIGHUP, signal.SIGHUP), stop, exit_now=exits.append,
                        reload=lambda: reloads.append(1))
    assert reloads == [1, 1] and not stop.is_set()
    await watch_signals(_signals(signal.SIGTERM, signal.SIGHUP), stop, exit_now=exits.append,
                        reload=lambda: reloads.append(1))
    assert stop.is_set() and reloads == [1, 1] and exits == []
    await watch_signals(_signals(signal.SIGHUP), anyio.Event(), exit_now=exits.append)  # nothing to reload
    assert exits == []


# ---- the hooks a reload uses --------------------------------------------------------------------------------


class FakeTaskGroup:
    def __init__(self) -> None:
        self.started: list[tuple[Any, ...]] = []

    def start_soon(self, func: Any, *args: Any) -> None:
        self.started.append((func, *args))


async def test_connectors_are_settled_against_the_new_config(rig: Rig) -> None:
    gw = rig.gw
    for smsc in gw.config.smscs:
        gw.make_connector(smsc)
    tg = FakeTaskGroup()
    gw._services = tg  # type: ignore[assignment]
    a, b, d = gw.connectors["a"], gw.connectors["b"], gw.connectors["d"]
    data = changed(routes=[{"name": "all", "prefix": "", "smscs": ["a", "c"]}])
    data["smscs"][0].update(window=4, throughput_per_s=7)  # a: in place
    data["smscs"][2]["host"] = "10.0.0.2"  # d: rebind
    data["smscs"] = [s for s in data["smscs"] if s["name"] != "b"]  # b: removed
    data["smscs"].append({"name": "c", "system_id": "c", "password": "pc"})  # c: added
    outcome = await gw.reloader.reload(parse_config(data, base_dir=rig.path.parent))
    assert outcome.ok

    assert gw.connectors["a"] is a and a.cfg.window == 4 and a.rate.current_per_s == 7
    c = gw.connectors["c"]
    assert gw.core.connectors["c"] is c and (c.run,) in tg.started
    assert (gw._retire_and_settle, "b", b) in tg.started and (gw._retire_and_settle, "d", d) in tg.started
    assert gw._settling == {"b", "d"}

    # The drains (no live binds here: they end at once). b is gone; d comes back with its new host.
    await gw._retire_and_settle("b", b)
    await gw._retire_and_settle("d", d)
    assert "b" not in gw.connectors and "b" not in gw.core.connectors and b.stopping
    d2 = gw.connectors["d"]
    assert d2 is not d and d.stopping and d2.cfg.host == "10.0.0.2" and (d2.run,) in tg.started
    assert gw._settling == set()


async def test_a_window_change_resizes_the_live_window_without_a_rebind() -> None:
    from gateway._connector import Connector

    live = _Live(conn=None, info=SessionInfo(0, "trx"), slots=anyio.Semaphore(10))  # type: ignore[arg-type]
    for _ in range(8):
        live.slots.acquire_nowait()  # 8 submits in flight, 2 slots free
    Connector._resize_window(live, -5)  # window 10 -> 5: 2 free slots taken now, 3 withheld as answers come
    assert live.slots.value == 0 and live.slots_owed == 3
    Connector._free_slots(live, 4)  # four answers: three pay what is owed, one slot frees
    assert live.slots.value == 1 and live.slots_owed == 0
    Connector._resize_window(live, -2)
    assert live.slots.value == 0 and live.slots_owed == 1
    Connector._resize_window(live, 3)  # grow: first cancel what is owed, then free the rest
    assert live.slots.value == 2 and live.slots_owed == 0
