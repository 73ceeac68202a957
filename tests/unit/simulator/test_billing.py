"""simulator/_billing.py: price points by convention, balances, barring, recent charges."""

from __future__ import annotations

from simulator._billing import ChargeResult, Convention, Ledger, Tariff
from smpp import DataSm, SubmitMulti, SubmitSm, Tlvs

PRICES = {"T100": 100, "84501": 300, "PP5": 5, "7": 7}


def test_service_type_convention() -> None:
    tariff = Tariff(Convention.SERVICE_TYPE, PRICES)
    assert tariff.price_point(SubmitSm(service_type="T100")) == ("T100", 100)
    assert tariff.price_point(SubmitSm(service_type="CMT")) is None
    assert tariff.price_point(SubmitMulti(service_type="T100")) == ("T100", 100)


def test_shortcode_convention() -> None:
    tariff = Tariff(Convention.SHORTCODE, PRICES)
    assert tariff.price_point(SubmitSm(source_addr="84501")) == ("84501", 300)
    assert tariff.price_point(DataSm(source_addr="84501")) == ("84501", 300)
    assert tariff.price_point(SubmitSm(source_addr="84001")) is None


def test_vendor_tlv_convention() -> None:
    tariff = Tariff(Convention.TLV, PRICES, tlv_tag=0x1401)
    assert tariff.price_point(SubmitSm(tlvs=Tlvs({"0x1401": b"PP5"}))) == ("PP5", 5)
    assert tariff.price_point(SubmitSm(tlvs=Tlvs({"0x1401": b"PP5\x00"}))) == ("PP5", 5)  # written as a C string
    assert tariff.price_point(SubmitSm(tlvs=Tlvs({"0x1402": b"PP5"}))) is None
    assert tariff.price_point(SubmitSm()) is None
    # An integer TLV value reads as its decimal spelling.
    assert Tariff(Convention.TLV, PRICES, tlv_tag=0x0204).price_point(
        SubmitSm(tlvs=Tlvs(user_message_reference=7))) == ("7", 7)
    assert Tariff(Convention.NONE, PRICES).price_point(SubmitSm(service_type="T100")) is None


def ledger() -> Ledger:
    return Ledger(default_balance=500, opening_balances={"4477009010": 0, "44770090": 250},
                  barred=["4477009011"], max_charges=3)


def test_balances_come_from_the_longest_prefix() -> None:
    led = ledger()
    assert led.balance("447700901000") == 0
    assert led.balance("447700900000") == 250
    assert led.balance("33612345678") == 500
    led.set_balance("33612345678", 42)
    assert led.balance("33612345678") == 42 and led.known_balances() == {"33612345678": 42}


def test_charges_debit_or_fail() -> None:
    led = ledger()
    ok = led.charge(msisdn="447700900000", price=100, price_point="T100", account="a", message_id="1", at=1.0)
    assert ok.result is ChargeResult.CHARGED and ok.balance_after == 150
    assert led.balance("447700900000") == 150
    poor = led.charge(msisdn="447700901000", price=1, price_point="T1", account="a", message_id="2", at=2.0)
    assert poor.result is ChargeResult.INSUFFICIENT_FUNDS and poor.balance_after == 0
    barred = led.charge(msisdn="447700901100", price=1, price_point="T1", account="b", message_id="3", at=3.0)
    assert barred.result is ChargeResult.BARRED
    exact = led.charge(msisdn="447700900000", price=150, price_point="T150", account="a", message_id="4", at=4.0)
    assert exact.result is ChargeResult.CHARGED and exact.balance_after == 0
    stats = led.statistics()
    assert (stats.charged, stats.charged_amount, stats.insufficient_funds, stats.barred) == (2, 250, 1, 1)
    # Only the last max_charges attempts are kept, oldest first; filters apply.
    assert [c.message_id for c in led.charges()] == ["2", "3", "4"]
    assert [c.message_id for c in led.charges(account="a")] == ["2", "4"]
    assert [c.message_id for c in led.charges(msisdn="447700900000", limit=1)] == ["4"]


def test_barring_at_run_time() -> None:
    led = ledger()
    led.bar("4479")
    assert led.is_barred("447911123456") and "4479" in led.barred()
    assert not led.unbar("447911123456")  # a prefix covers it; the number itself was never barred
    assert led.unbar("4479") and not led.is_barred("447911123456")
