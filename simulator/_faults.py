"""Rule: each fault is an independent draw from the simulator's seeded RNG, made only while a fault is on.

A `FaultPlan` is compiled from the `faults` settings (the top-level default, or an account's own, replaced at run
time through the control API). `active` is False when every fault is off, and then the SMPP path makes no draw
and no check beyond reading that one attribute. Message-bearing requests (submit_sm, submit_multi, data_sm) may
get a dropped response, a generic_nack, an error command_status, a delayed response, a malformed PDU after
them, or their receipt before their response; every received PDU counts toward a disconnect.
"""

from __future__ import annotations

import random
import struct
from bisect import bisect_right
from enum import Enum
from itertools import accumulate

from smpp import DeliverSm, Status, encode_pdu

from ._config import Faults, parse_status

__all__ = ["FaultPlan", "SubmitFault", "malformed_deliver_sm"]


class SubmitFault(Enum):
    """What a fault does to one message-bearing request's response."""

    DROP = "drop"
    GENERIC_NACK = "generic_nack"
    ERROR = "error"


class FaultPlan:
    """The compiled faults in force for one account."""

    __slots__ = (
        "active",
        "disconnect_after_pdus",
        "disconnect_rate",
        "drop_response_rate",
        "enquire_link_silence",
        "error_cumulative",
        "error_rate",
        "error_statuses",
        "generic_nack_rate",
        "malformed_rate",
        "receipt_before_resp_rate",
        "response_delay_s",
        "settings",
        "slow_read_bytes",
        "slow_read_pause_s",
    )

    def __init__(self, settings: Faults, path: str = "faults") -> None:
        """Compile `settings` (already validated by the config loader; `path` names them in errors)."""
        self.settings = settings
        pairs = [(parse_status(k, f"{path}.error_rates.{k}"), v) for k, v in settings.error_rates.items() if v > 0]
        self.error_statuses = tuple(s for s, _ in pairs)
        self.error_cumulative = tuple(accumulate(v for _, v in pairs))
        self.error_rate = self.error_cumulative[-1] if pairs else 0.0
        self.response_delay_s = settings.response_delay_s
        self.drop_response_rate = settings.drop_response_rate
        self.generic_nack_rate = settings.generic_nack_rate
        self.malformed_rate = settings.malformed_rate
        self.disconnect_after_pdus = settings.disconnect_after_pdus
        self.disconnect_rate = settings.disconnect_rate
        self.slow_read_pause_s = settings.slow_read_pause_s
        self.slow_read_bytes = settings.slow_read_bytes
        self.enquire_link_silence = settings.enquire_link_silence
        self.receipt_before_resp_rate = settings.receipt_before_resp_rate
        self.active = settings != Faults()

    def draw_submit(self, rng: random.Random) -> tuple[SubmitFault, int] | None:
        """What happens to one message-bearing request's response: dropped, nacked, an error status, or None."""
        if self.drop_response_rate and rng.random() < self.drop_response_rate:
            return SubmitFault.DROP, 0
        if self.generic_nack_rate and rng.random() < self.generic_nack_rate:
            return SubmitFault.GENERIC_NACK, int(Status.ESME_RSYSERR)
        if self.error_rate:
            r = rng.random()
            if r < self.error_rate:
                i = bisect_right(self.error_cumulative, r)
                return SubmitFault.ERROR, self.error_statuses[min(i, len(self.error_statuses) - 1)]
        return None

    def draw(self, rng: random.Random, rate: float) -> bool:
        """One independent draw for a fault with this probability."""
        return bool(rate) and rng.random() < rate


_LENGTH = struct.Struct(">I")


def malformed_deliver_sm(sequence_number: int) -> bytes:
    """A deliver_sm whose short_message runs past the end of the PDU (its sm_length says 20, 10 octets follow).

    The header is sound, so a conforming ESME answers it (deliver_sm_resp with ESME_RINVMSGLEN, or a
    generic_nack) and keeps the session.
    """
    data = encode_pdu(DeliverSm(sequence_number=sequence_number, source_addr="0", destination_addr="0",
                                short_message=b"malformed!" * 2))
    cut = data[:-10]
    return _LENGTH.pack(len(cut)) + cut[4:]
