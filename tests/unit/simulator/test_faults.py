"""simulator/_faults.py: draws with a seeded RNG, the inactive plan, the malformed PDU."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from simulator._config import Faults
from simulator._faults import FaultPlan, SubmitFault, malformed_deliver_sm
from smpp import RemoteProtocolError, Status, decode_pdu


def test_all_off_is_inactive_and_draws_nothing() -> None:
    plan = FaultPlan(Faults())
    rng = random.Random(1)
    state = rng.getstate()
    assert not plan.active and plan.draw_submit(rng) is None and not plan.draw(rng, plan.malformed_rate)
    assert rng.getstate() == state


def test_error_rates_per_status() -> None:
    plan = FaultPlan(Faults(error_rates={"ESME_RSYSERR": 0.2, "ESME_RTHROTTLED": 0.1}))
    assert plan.active
    rng = random.Random(9)
    counts = Counter(plan.draw_submit(rng) for _ in range(10_000))
    assert abs(counts[(SubmitFault.ERROR, Status.ESME_RSYSERR)] - 2000) < 200
    assert abs(counts[(SubmitFault.ERROR, Status.ESME_RTHROTTLED)] - 1000) < 150
    assert abs(counts[None] - 7000) < 250


def test_drop_comes_before_nack_and_errors() -> None:
    rng = random.Random(2)
    assert FaultPlan(Faults(drop_response_rate=1, generic_nack_rate=1)).draw_submit(rng) == (SubmitFault.DROP, 0)
    assert FaultPlan(Faults(generic_nack_rate=1, error_rates={"ESME_RSYSERR": 1})).draw_submit(rng) == (
        SubmitFault.GENERIC_NACK, Status.ESME_RSYSERR)


def test_the_malformed_deliver_sm_has_a_sound_header_and_a_bad_body() -> None:
    data = malformed_deliver_sm(77)
    assert int.from_bytes(data[:4], "big") == len(data)
    assert data[4:8] == b"\x00\x00\x00\x05" and data[12:16] == (77).to_bytes(4, "big")
    with pytest.raises(RemoteProtocolError) as info:
        decode_pdu(data)
    assert info.value.status == Status.ESME_RINVMSGLEN and info.value.sequence_number == 77
