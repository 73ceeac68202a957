"""Shared test policy.

Interop tests (marked `interop`) run against peers we did not write. When a peer is missing they skip with
the reason, except under SMPPGW_REQUIRE_INTEROP=1 (CI), where a missing peer fails the test.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
from hypothesis import settings

REQUIRE_INTEROP = os.environ.get("SMPPGW_REQUIRE_INTEROP") == "1"

# CI replays the same examples every run (a landing is not decided by luck); local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, database=None)
if REQUIRE_INTEROP or os.environ.get("SMPPGW_HYPOTHESIS_PROFILE") == "ci":
    settings.load_profile("ci")


def require_peer(name: str, available: bool, how: str = "") -> None:
    """Skip (or fail under SMPPGW_REQUIRE_INTEROP=1) when the interop peer `name` is not available."""
    if available:
        return
    reason = f"interop peer {name} is not available" + (f" ({how})" if how else "")
    if REQUIRE_INTEROP:
        pytest.fail(reason + "; SMPPGW_REQUIRE_INTEROP=1 requires it", pytrace=False)
    pytest.skip(reason)


def require_command(cmd: str, package: str) -> str:
    """The path of `cmd`, or skip/fail as require_peer does."""
    path = shutil.which(cmd) or (f"/usr/sbin/{cmd}" if os.path.exists(f"/usr/sbin/{cmd}") else None)
    require_peer(cmd, path is not None, f"apt-get install {package}")
    assert path is not None
    return path


@pytest.fixture(params=[pytest.param(("asyncio", {"use_uvloop": True}), id="asyncio+uvloop"),
                        pytest.param(("trio", {}), id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """Async tests run on asyncio with uvloop and on trio unless a module narrows this fixture."""
    return request.param  # type: ignore[no-any-return]


class ManualClock:
    """A clock the test moves by hand (`clock.now = ...`); calling it returns `now`. For the `wall=` and `clock=`
    arguments of the gateway's services."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingConn:
    """What a connector's acker needs of an SmppConnection, `closed` and `send`, recording what would be sent."""

    def __init__(self) -> None:
        self.closed = False
        self.sent: list[Any] = []

    def send(self, pdu: Any) -> Any:
        self.sent.append(pdu)
        return pdu
