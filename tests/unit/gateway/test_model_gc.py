"""Rule 4 of gateway/_model.py: records are plain data, left out of the cyclic garbage collector."""

from __future__ import annotations

import gc

from gateway._model import DECODER, ENCODER, Message, MessageStatus, Part, StatusChange, new_message_id


def record() -> Message:
    msg = Message(id=new_message_id(), account="acme", to="447911123456", source="ACME", text="hello",
                  created_at=1.0, expires_at=2.0, parts=[Part("1a", "DELIVRD", "sim")],
                  history=[StatusChange(1.0, "queued", "accepted")], meta={"charge": {"price": "1.50"}})
    msg.set_status(MessageStatus.DELIVERED, 1.5, "DELIVRD", "sim")
    return msg


def test_records_are_not_tracked_by_the_collector() -> None:
    msg = record()
    assert not gc.is_tracked(msg)
    assert not any(gc.is_tracked(x) for x in (*msg.parts, *msg.history))
    # Their containers are ordinary lists and dicts: a cycle through one of them would still be found.
    assert gc.is_tracked(msg.history) and gc.is_tracked(msg.meta)


def test_a_stored_record_comes_back_untracked_and_equal() -> None:
    msg = record()
    again = DECODER.decode(ENCODER.encode(msg))
    assert again == msg
    assert not gc.is_tracked(again) and not gc.is_tracked(again.history[-1])


def test_a_record_holds_plain_data_only() -> None:
    """What makes leaving it out safe: nothing in a record refers back to the record (or to anything alive)."""
    msg = record()
    seen: list[object] = []

    def walk(x: object) -> None:
        seen.append(x)
        if isinstance(x, Message | Part | StatusChange):
            for name in x.__struct_fields__:
                walk(getattr(x, name))
        elif isinstance(x, list | tuple):
            for y in x:
                walk(y)
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(k)
                walk(v)
        else:
            assert x is None or isinstance(x, str | int | float | bool), type(x)

    walk(msg)
    assert sum(1 for x in seen if x is msg) == 1
