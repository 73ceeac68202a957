"""Tests for dlr._correlator: matching receipts to parts, early receipts, bounds and time."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlr import Correlator, IdPolicy, Match, Receipt, ReceiptStatus, parse_receipt_text

S = ReceiptStatus


def _r(text_id: str | None, status: ReceiptStatus = S.DELIVERED, *, tlv_id: str | None = None,
       source_addr: str = "") -> Receipt:
    smsc_id = tlv_id if tlv_id is not None else (text_id or "")
    return Receipt(smsc_message_id=smsc_id, status=status, text_id=text_id, receipted_message_id=tlv_id,
                   source_addr=source_addr)


def test_registrations_leave_the_cyclic_collectors_sight() -> None:
    # A gateway keeps one registration per part for days: once collected, none of it may stay tracked (each
    # tracked object is walked by every collection of its generation).
    c = Correlator()
    for i in range(100):
        c.register("opA", f"{i:x}", f"m-{i}", 0, now=0.0, destination="447911123456")
    gc.collect()
    assert c._entries
    assert not any(gc.is_tracked(key) or gc.is_tracked(entry) for key, entry in c._entries.items())
    assert c.match("opA", _r("4f"), now=1.0) == Match("m-79", 0, "4f")


def test_register_then_match() -> None:
    c = Correlator()
    assert c.register("opA", "1001", "m-1", 0, now=0.0) == []
    assert c.match("opA", _r("1001"), now=1.0) == Match("m-1", 0, "1001")
    # Receipts keep matching (an ENROUTE, then the final one, then a duplicate).
    assert c.match("opA", _r("1001", S.ENROUTE), now=2.0) == Match("m-1", 0, "1001")
    assert c.match("opA", _r("1001"), now=3.0) == Match("m-1", 0, "1001")
    stats = c.statistics()
    assert (stats.registered_total, stats.matched_total, stats.parked) == (1, 3, 0)


def test_register_takes_the_keys_the_caller_computed() -> None:
    """GatewayCore stores the keys and hands the same tuple over: the correlator uses it as it is."""
    c = Correlator(default_policy=IdPolicy.parse("auto"))
    c.register("opA", "00ff", "m-1", 0, now=0.0, keys=("00ff", "ff"))
    assert c.match("opA", _r("ff"), now=1.0) == Match("m-1", 0, "ff")
    assert c.match("opA", _r("255"), now=1.0) is None  # "255" would be a key of "00ff" read as hex: not given


def test_parts_of_a_long_message() -> None:
    c = Correlator()
    for part, resp_id in enumerate(["a1", "a2", "a3"]):
        c.register("opA", resp_id, "m-long", part, now=0.0)
    assert [c.match("opA", _r(i), 1.0) for i in ("a3", "a1")] == [Match("m-long", 2, "a3"), Match("m-long", 0, "a1")]


def test_a_receipt_before_its_resp_is_parked_and_handed_back() -> None:
    c = Correlator()
    enroute, delivered = _r("77", S.ENROUTE), _r("77")
    assert c.match("opA", enroute, now=0.0) is None
    assert c.match("opA", delivered, now=0.5) is None
    assert c.statistics().parked == 2
    # Another SMSC's id 77 does not take them.
    assert c.register("opB", "77", "other", 0, now=0.8) == []
    assert c.register("opA", "77", "m-1", 0, now=1.0) == [enroute, delivered]
    stats = c.statistics()
    assert (stats.parked, stats.parked_total, stats.parked_matched_total, stats.matched_total) == (0, 2, 2, 2)
    assert c.match("opA", _r("77"), now=2.0) == Match("m-1", 0, "77")
    assert c.expire(now=10_000.0) == []


def test_early_receipt_with_the_quirk_and_two_ids() -> None:
    # The receipt's TLV id is hex and its text id decimal (cloudhopper's captured receipt); the resp is hex.
    c = Correlator(default_policy=IdPolicy.parse("hex/decimal"))
    r = _r("0059113978", tlv_id="38601fa")
    assert c.match("opA", r, now=0.0) is None
    assert c.register("opA", "38601FA", "m-9", 1, now=0.1) == [r]
    assert c.match("opA", r, now=0.2) == Match("m-9", 1, "59113978")


def test_keys_are_per_smsc() -> None:
    c = Correlator()
    c.register("opA", "5", "m-a", 0, now=0.0)
    c.register("opB", "5", "m-b", 0, now=0.0)
    assert c.match("opA", _r("5"), 1.0) == Match("m-a", 0, "5")
    assert c.match("opB", _r("5"), 1.0) == Match("m-b", 0, "5")
    assert c.match("opC", _r("5"), 1.0) is None


def test_policy_per_call() -> None:
    c = Correlator()
    dec_hex = IdPolicy.parse("decimal/hex")
    c.register("opA", "12345", "m-1", 0, now=0.0, policy=dec_hex)
    assert c.match("opA", _r("3039"), now=1.0, policy=dec_hex) == Match("m-1", 0, "12345")


def test_the_text_id_matches_when_the_tlv_id_does_not() -> None:
    c = Correlator()
    c.register("opA", "5000", "m-1", 0, now=0.0)
    assert c.match("opA", _r("5000", tlv_id="6000"), now=1.0) == Match("m-1", 0, "5000")


def test_registrations_expire() -> None:
    c = Correlator(ttl_s=100.0)
    c.register("opA", "1", "m-1", 0, now=0.0)
    assert c.match("opA", _r("1"), now=99.0) is not None
    assert c.match("opA", _r("1"), now=100.0) is None  # now parked instead
    assert len(c) == 0
    assert c.statistics().parked == 1


def test_parked_receipts_expire_as_orphans() -> None:
    c = Correlator(park_ttl_s=60.0)
    lost = _r("404")
    assert c.match("opA", lost, now=0.0) is None
    assert c.expire(now=59.0) == []
    # A resp after the parking time no longer takes it; expire reports it once.
    assert c.register("opA", "404", "m-late", 0, now=61.0) == []
    assert c.expire(now=61.0) == [lost]
    assert c.expire(now=62.0) == []
    assert c.statistics().parked_expired_total == 1
    assert c.statistics().parked == 0


def test_bounded_entries_drop_the_oldest() -> None:
    c = Correlator(max_entries=2)
    for i in range(3):
        c.register("opA", str(i), f"m-{i}", 0, now=float(i))
    assert len(c) == 2
    assert c.statistics().entries_evicted_total == 1
    assert c.match("opA", _r("2"), now=5.0) == Match("m-2", 0, "2")
    assert c.match("opA", _r("0"), now=5.0) is None


def test_bounded_parking_pushes_out_the_oldest_as_orphans() -> None:
    c = Correlator(max_parked=2)
    receipts = [_r(str(i)) for i in range(3)]
    for i, r in enumerate(receipts):
        assert c.match("opA", r, now=float(i)) is None
    assert c.statistics().parked == 2
    assert c.statistics().parked_evicted_total == 1
    assert c.register("opA", "0", "m-0", 0, now=3.0) == []
    assert c.register("opA", "2", "m-2", 0, now=3.0) == [receipts[2]]
    assert c.expire(now=3.0) == [receipts[0]]


def test_registering_an_id_again_replaces_it() -> None:
    c = Correlator(ttl_s=10.0)
    c.register("opA", "9", "m-old", 0, now=0.0)
    c.register("opA", "9", "m-new", 2, now=5.0)
    assert c.match("opA", _r("9"), now=12.0) == Match("m-new", 2, "9")
    assert len(c) == 1


def test_a_receipt_without_an_id_is_unmatchable_not_parked() -> None:
    c = Correlator()
    assert c.match("opA", _r(None), now=0.0) is None
    assert c.match("opA", _r("  "), now=0.0) is None
    stats = c.statistics()
    assert (stats.unmatchable_total, stats.parked) == (2, 0)
    assert c.register("opA", "", "m-1", 0, now=0.0) == []
    assert c.statistics().registered_total == 0


def test_auto_ambiguity_is_flagged_and_the_destination_breaks_the_tie() -> None:
    # Under AUTO, the receipt id "3039" is message 3039 (decimal) or message 12345 (hex 0x3039).
    c = Correlator(default_policy=IdPolicy.parse("auto"))
    c.register("opA", "3039", "m-3039", 0, now=0.0, destination="447700900111")
    c.register("opA", "12345", "m-12345", 0, now=0.0, destination="+44 7700 900222")
    # Without a better clue the exact string wins.
    assert c.match("opA", _r("3039"), now=1.0) == Match("m-3039", 0, "3039", ambiguous=True)
    # The receipt comes from the handset the MT went to (source_addr), written nationally here.
    assert c.match("opA", _r("3039", source_addr="07700900222"), now=1.0) == Match(
        "m-12345", 0, "12345", ambiguous=True)
    assert c.statistics().ambiguous_total == 2
    # An id only one reading reaches is not ambiguous.
    assert c.match("opA", _r("74565"), now=1.0) == Match("m-12345", 0, "74565")


def test_auto_meets_the_classic_quirk_from_parsed_text() -> None:
    c = Correlator(default_policy=IdPolicy.parse("auto"))
    c.register("opA", "12345", "m-1", 0, now=0.0)
    r = parse_receipt_text("id:3039 sub:001 dlvrd:001 submit date:2403010915 done date:2403010916 stat:DELIVRD "
                           "err:000 text:")
    assert r is not None
    assert c.match("opA", r, now=1.0) == Match("m-1", 0, "12345")


@pytest.mark.parametrize("kwargs", [{"max_entries": 0}, {"ttl_s": 0.0}, {"max_parked": -1}, {"park_ttl_s": 0.0}])
def test_bounds_must_be_positive(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        Correlator(**kwargs)  # type: ignore[arg-type]


@given(st.permutations([("resp", i) for i in range(6)] + [("dlr", i) for i in range(6)]))
def test_every_receipt_is_handed_over_exactly_once_whatever_the_order(events: list[tuple[str, int]]) -> None:
    c = Correlator(default_policy=IdPolicy.parse("decimal/hex"))
    got: dict[int, str] = {}
    for step, (what, i) in enumerate(events):
        now = float(step)
        if what == "resp":
            for r in c.register("opA", str(1000 + i), f"m-{i}", 0, now):
                assert r.text_id is not None
                n = int(r.text_id, 16) - 1000
                assert n not in got
                got[n] = f"m-{i}"
        else:
            m = c.match("opA", _r(format(1000 + i, "x")), now)
            if m is not None:
                assert i not in got
                got[i] = m.message_id
    assert got == {i: f"m-{i}" for i in range(6)}
    assert c.statistics().parked == 0
    assert c.expire(now=1e9) == []


@given(st.lists(st.tuples(st.sampled_from(["register", "match", "expire"]), st.sampled_from(["1", "2", "3"]),
                          st.floats(min_value=0.0, max_value=30.0)), max_size=40))
def test_registrations_expire_exactly_when_their_time_is_up(ops: list[tuple[str, str, float]]) -> None:
    """Against a model that forgets each registration `ttl_s` after it was made (times only move forward, as the
    monotonic clock the gateway passes): the correlator skips looking for expired entries while none can be."""
    c = Correlator(ttl_s=10.0)
    model: dict[str, float] = {}  # key -> expires_at
    now = 0.0
    for op, key, step in ops:
        now += step
        live = {k: t for k, t in model.items() if t > now}
        if op == "register":
            c.register("opA", key, f"m-{key}", 0, now)
            live[key] = now + 10.0
        elif op == "match":
            hit = c.match("opA", _r(key), now=now)
            assert (hit is not None) == (key in live)
        else:
            c.expire(now)
        model = live
        assert len(c) == len(model)
