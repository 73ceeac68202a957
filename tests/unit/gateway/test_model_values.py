"""STATUS_VALUE (gateway/_model.py): each status's value, read without the Enum property on every message."""

from __future__ import annotations

from gateway._model import STATUS_VALUE, Message, MessageStatus


def test_every_status_has_its_value_as_a_plain_string() -> None:
    assert set(STATUS_VALUE) == set(MessageStatus)
    for status, value in STATUS_VALUE.items():
        assert value == status.value and type(value) is str


def test_history_records_the_plain_value() -> None:
    m = Message(id="m", account="a", to="447911123456", source="x", text="t", created_at=0.0, expires_at=9.0)
    assert m.set_status(MessageStatus.SUBMITTED, 1.0, "sent")
    assert m.set_status(MessageStatus.DELIVERED, 2.0, "DELIVRD")
    assert not m.set_status(MessageStatus.FAILED, 3.0, "late")  # final already: only recorded
    assert [(h.status, type(h.status)) for h in m.history] == [
        ("submitted", str), ("delivered", str), ("late:failed", str)]
    assert m.status is MessageStatus.DELIVERED
