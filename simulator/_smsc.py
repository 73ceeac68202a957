"""Rule: an MT's fate is decided once, when it is accepted; everything after is the scheduler replaying that decision.

The `Smsc` answers each request as an operator's SMSC does. Binds are checked against the accounts
(ESME_RINVSYSID, ESME_RINVPASWD, ESME_RBINDFAIL). A message-bearing request (submit_sm, submit_multi per
destination, data_sm) passes the account's faults, throughput window and queue, then the outcome rule of its
destination's longest prefix (which may refuse it with a submit status) and the account's billing; then it gets
a message id, its final status, err code and delay, all drawn at once from the seeded RNG, and its response.
query_sm, cancel_sm and replace_sm read and change that decision while the message is pending. Receipts,
intermediate receipts, handset replies and delayed responses are scheduled, never tasks; `tick()` runs what is
due. No handler awaits and none logs per message.
"""

from __future__ import annotations

import hmac
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlr import NetworkError, ReceiptStatus
from smpp import (
    Alphabet,
    CancelSm,
    CancelSmResp,
    CommandId,
    Concatenation,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    GenericNack,
    LocalProtocolError,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReferenceCounter,
    ReplaceSm,
    ReplaceSmResp,
    Status,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    TextEncodeError,
    Tlvs,
    UnsuccessSme,
    encode_message,
    split_message,
)
from smpp._session import ConnectionClosed

from ._accounts import AccountState, AccountStatistics
from ._billing import ChargeResult, Ledger, LedgerStatistics
from ._config import STAT_WORDS, Failure, Faults, SimulatorConfig, parse_status
from ._faults import FaultPlan, SubmitFault, malformed_deliver_sm
from ._handsets import HandsetReply, Handsets
from ._ids import IdWriter
from ._link import SmscLink
from ._outcomes import Outcome, OutcomePlan, PrefixTable
from ._schedule import Action, Scheduler
from ._store import GroupKey, MessageGroup, MessageRecord, MessageStore, StoreStatistics, concat_of

__all__ = ["MoResult", "Smsc", "SmscStatistics"]

log = logging.getLogger(__name__)

C = CommandId
_UDHI = 0x40
_FAILURES = frozenset(s for s in ReceiptStatus if s.is_failure)
_DELIVERED = ReceiptStatus.DELIVERED
# deliver_sm_resp statuses after which an SMSC tries the receipt again (temporary refusals).
_RETRY = frozenset({Status.ESME_RX_T_APPN, Status.ESME_RMSGQFUL, Status.ESME_RTHROTTLED, Status.ESME_RSYSERR})
_BIND_KINDS = {C.bind_transmitter: "transmitter", C.bind_receiver: "receiver", C.bind_transceiver: "transceiver"}
_BIND_TLVS = Tlvs(sc_interface_version=0x34)
_ALPHABETS: dict[str, Alphabet | None] = {
    "auto": None, "gsm7": Alphabet.GSM7, "ucs2": Alphabet.UCS2, "latin1": Alphabet.LATIN_1,
}
_RATE_SAMPLES = 61

Handler = Callable[[SmscLink, Any, float, float], None]


@dataclass(frozen=True, slots=True)
class _FailurePlan:
    status: ReceiptStatus
    err: int
    network_error: NetworkError | None
    submit_status: int | None

    @classmethod
    def of(cls, f: Failure, path: str) -> _FailurePlan:
        ne = f.network_error
        return cls(STAT_WORDS[f.stat], f.err, NetworkError(ne.network_type, ne.error_code) if ne else None,
                   parse_status(f.submit_status, f"{path}.submit_status") if f.submit_status is not None else None)


@dataclass(frozen=True, slots=True)
class MoResult:
    """What POST /mo (or a handset) did: the account, the parts, their ids, and whether they wait in the backlog."""

    account: str
    parts: int
    message_ids: tuple[str, ...]
    queued: bool


@dataclass(frozen=True, slots=True)
class SmscStatistics:
    """Everything GET /stats shows."""

    uptime_s: float
    links: int
    rejected_pdus: int
    scheduled: int
    accounts: tuple[AccountStatistics, ...]
    rates_per_s: dict[str, dict[str, float]]
    store: StoreStatistics
    billing: LedgerStatistics


def smpp_time(wall: float) -> str:
    """An absolute time in the §7.1.1 form YYMMDDhhmmsstnnp, in UTC."""
    return time.strftime("%y%m%d%H%M%S", time.gmtime(wall)) + f"{int(wall * 10) % 10}00+"


class Smsc:
    """The SMSC's behaviour, shared by every link (see the module rule)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        salt = IdWriter.new_salt(self.rng)
        self.default_faults = FaultPlan(config.faults)
        self.accounts: dict[str, AccountState] = {
            a.system_id: AccountState(a, salt=salt, default_faults=self.default_faults) for a in config.accounts
        }
        self.shortcodes: PrefixTable[AccountState] = PrefixTable(
            [(code, self.accounts[a.system_id]) for a in config.accounts for code in a.shortcodes])
        r = config.receipts
        self.plan = OutcomePlan(r.outcomes, r.delay)
        self.enroute_mode = r.enroute.mode
        self.enroute_after_s = r.enroute.after_s
        self.retry_delay_s = r.retry_delay_s
        self.handsets = Handsets(config.handsets)
        b = config.billing
        self.ledger = Ledger(default_balance=b.default_balance, opening_balances=b.balances,
                             barred=b.barred_numbers, max_charges=b.max_charges)
        self.insufficient_funds = _FailurePlan.of(b.insufficient_funds, "billing.insufficient_funds")
        self.barred = _FailurePlan.of(b.barred, "billing.barred")
        self.store = MessageStore(config.store.max_messages)
        self.scheduler = Scheduler()
        self.references = ReferenceCounter()
        self._next_number = (config.message_id_start if config.message_id_start is not None
                             else time.time_ns() // 1000)
        self.links: set[SmscLink] = set()
        self.rejected = 0
        self.started = time.monotonic()
        self._samples: deque[tuple[float, dict[str, tuple[int, int, int]]]] = deque(maxlen=_RATE_SAMPLES)
        self.handlers: dict[int, Handler] = {
            C.bind_transmitter: self.on_bind,
            C.bind_receiver: self.on_bind,
            C.bind_transceiver: self.on_bind,
            C.submit_sm: self.on_message,
            C.data_sm: self.on_message,
            C.submit_multi: self.on_submit_multi,
            C.query_sm: self.on_query_sm,
            C.cancel_sm: self.on_cancel_sm,
            C.replace_sm: self.on_replace_sm,
        }

    # ---- faults, run time ----------------------------------------------------------------------------------

    def set_faults(self, faults: Faults, account: str | None = None) -> None:
        """Replace the default faults, or one account's own.

        Raises:
            KeyError: no such account.
        """
        if account is None:
            self.default_faults = FaultPlan(faults)
            for acct in self.accounts.values():
                if acct.own_faults is None:
                    acct.faults = self.default_faults
            return
        acct = self.accounts[account]
        acct.set_faults(FaultPlan(faults, f"accounts.{account}.faults"), self.default_faults)

    def clear_faults(self, account: str) -> None:
        """Make an account follow the default faults again.

        Raises:
            KeyError: no such account.
        """
        self.accounts[account].set_faults(None, self.default_faults)

    def set_handsets(self, handsets: Handsets) -> None:
        """Replace the handset rules."""
        self.handsets = handsets

    # ---- binds ---------------------------------------------------------------------------------------------

    def on_bind(self, link: SmscLink, pdu: Any, now: float, wall: float) -> None:
        """bind_transmitter, bind_receiver, bind_transceiver (§4.1)."""
        kind = _BIND_KINDS[pdu.command_id]
        acct = self.accounts.get(pdu.system_id)
        if acct is None:
            status = Status.ESME_RINVSYSID
        elif not hmac.compare_digest(pdu.password.encode(), acct.password.encode()):
            status = Status.ESME_RINVPASWD
        elif kind not in acct.bind_types or len(acct.links) >= acct.config.max_binds:
            status = Status.ESME_RBINDFAIL
        else:
            status = Status.ESME_ROK
        if status:
            link.send(pdu.make_response(command_status=status), now)
            log.info("bind refused peer=%s system_id=%s type=%s status=%s", link.peer, pdu.system_id, kind,
                     status.name)
            return
        assert acct is not None
        link.send(pdu.make_response(system_id=self.config.system_id, tlvs=_BIND_TLVS), now)
        link.account = acct
        link.bind_type = kind
        acct.attach(link, receives=kind != "transmitter")
        link.bound(acct.config.window)
        log.info("bound peer=%s system_id=%s type=%s binds=%d", link.peer, acct.system_id, kind, len(acct.links))
        if acct.backlog:
            acct.drain(now, wall)

    def on_closed(self, link: SmscLink, ev: ConnectionClosed, now: float, wall: float) -> None:
        """A link's session closed: its unanswered deliver_sm go back to the front of the backlog."""
        acct = link.account
        if acct is None or link not in acct.links:
            return
        acct.detach(link)
        for request in reversed(ev.unanswered):
            if request.command_id == C.deliver_sm:
                acct.park(request, front=True)
        log.info("unbound peer=%s system_id=%s type=%s reason=%s", link.peer, acct.system_id, link.bind_type,
                 link.close_reason or ("unbind" if ev.error is None else str(ev.error)))
        if acct.backlog and acct.receivers:
            acct.drain(now, wall)

    # ---- responses to our deliver_sm -----------------------------------------------------------------------

    def on_response(self, link: SmscLink, request: Pdu, response: Pdu, now: float, wall: float) -> None:
        """A deliver_sm_resp (or generic_nack): count it, retry a temporary refusal, refill the window."""
        acct = link.account
        if acct is None or request.command_id != C.deliver_sm:
            return
        if response.command_status == 0 and type(response) is DeliverSmResp:
            acct.deliver_acked += 1
        else:
            acct.deliver_refused += 1
            if response.command_status in _RETRY:
                self.scheduler.push(now + self.retry_delay_s, Action.REDELIVER, (acct, request))
        if acct.backlog:
            acct.drain(now, wall)

    def on_timeout(self, link: SmscLink, request: Pdu, now: float, wall: float) -> None:
        """A deliver_sm went unanswered: it waits for a receiver again."""
        acct = link.account
        if acct is not None and request.command_id == C.deliver_sm:
            acct.park(request, front=True)

    # ---- message-bearing requests --------------------------------------------------------------------------

    def _respond(self, link: SmscLink, acct: AccountState, resp: Pdu, now: float) -> None:
        acct.responses[resp.command_status] += 1
        faults = acct.faults
        if faults.active and faults.response_delay_s:
            self.scheduler.push(now + faults.response_delay_s, Action.RESPONSE, (link, resp))
        else:
            link.send(resp, now)

    def _fault(self, link: SmscLink, acct: AccountState, pdu: Pdu, now: float) -> bool:
        """Apply the faults to one message-bearing request; True when they answered (or swallowed) it."""
        faults = acct.faults
        if faults.malformed_rate and faults.draw(self.rng, faults.malformed_rate):
            link.send_raw(malformed_deliver_sm(link.next_sequence_number()))
        drawn = faults.draw_submit(self.rng)
        if drawn is None:
            return False
        kind, status = drawn
        if kind is SubmitFault.DROP:
            acct.dropped_responses += 1
        elif kind is SubmitFault.GENERIC_NACK:
            acct.responses[status] += 1
            link.send(GenericNack(command_status=status, sequence_number=pdu.sequence_number), now)
        else:
            self._respond(link, acct, pdu.make_response(command_status=status), now)
        return True

    def _take_number(self) -> int:
        n = self._next_number
        self._next_number = n + 1
        return n

    def _accept(self, acct: AccountState, pdu: Any, destination: str, outcome: Outcome, now: float, wall: float,
                number: int | None = None) -> MessageRecord | int:
        """Accept one MT (one destination of it): its record, or the command_status that refuses it."""
        n = self._take_number() if number is None else number
        rng = self.rng
        delay = outcome.delay.constant
        if delay is None:
            delay = outcome.delay.draw(rng)
        record = MessageRecord(acct.ids.resp(n), n, acct.system_id, "mt", pdu, pdu.source_addr, destination, wall,
                               now + delay, wall + delay, outcome.pick(rng), outcome.err, outcome.network_error)
        key: GroupKey | None = None
        concat = concat_of(pdu) if (pdu.esm_class & _UDHI or pdu.tlvs) else None
        if concat is not None:
            key = (acct.system_id, pdu.source_addr, destination, concat[0], concat[1])
        if acct.tariff is not None:
            status = self._bill(acct, pdu, record, self.store.open_group(key, concat[2]) if key and concat else None,
                                wall)
            if status:
                return status
        if key is not None and concat is not None:
            group = self.store.join_group(record, key, concat[2])
            if group.charge is None and record.charge is not None:
                group.charge = record.charge
        rd = pdu.registered_delivery & 3
        record.receipt_wanted = rd == 1 or rd == 3 or (rd == 2 and record.status in _FAILURES)
        self.store.add(record)
        acct.accepted += 1
        return record

    def _bill(self, acct: AccountState, pdu: Any, record: MessageRecord, group: MessageGroup | None,
              wall: float) -> int:
        assert acct.tariff is not None
        point = acct.tariff.price_point(pdu)
        if point is None:
            return 0
        if group is not None and group.charge is not None:
            charge = group.charge  # a long message is charged once, at its first part
        else:
            charge = self.ledger.charge(msisdn=record.destination, price=point[1], price_point=point[0],
                                        account=acct.system_id, message_id=record.message_id, at=wall)
            record.charge = charge
        if charge.result is ChargeResult.CHARGED:
            acct.charged += 1
            return 0
        failure = self.barred if charge.result is ChargeResult.BARRED else self.insufficient_funds
        if failure.submit_status is not None:
            return failure.submit_status
        record.status = failure.status
        record.err = failure.err
        record.network_error = failure.network_error
        return 0

    def _schedule(self, acct: AccountState, record: MessageRecord, registered_delivery: int, now: float,
                  wall: float) -> None:
        """Plan what follows an accepted MT: an ENROUTE receipt, a handset reply, the final status."""
        delay = record.due - now
        mode = self.enroute_mode
        if mode != "never" and delay > self.enroute_after_s and (
                (mode == "always" and registered_delivery & 3) or (mode == "requested" and registered_delivery & 0x10)):
            self.scheduler.push(now + self.enroute_after_s, Action.ENROUTE, record)
        handsets = self.handsets
        if handsets and record.status is _DELIVERED and handsets.watches(record.destination):
            self._handset(acct, record)
        if delay <= 0:
            if record.receipt_wanted:
                acct.deliver((record, False), now, wall)
        else:
            acct.pending += 1
            self.scheduler.push(record.due, Action.FINAL, record)

    def _handset(self, acct: AccountState, record: MessageRecord) -> None:
        group = record.group
        if group is not None:
            if len(group.parts) < group.total or group.handset_done:
                return
            group.handset_done = True
            text = group.text()
        else:
            pdu = record.pdu
            if (type(pdu) is SubmitSm and not pdu.esm_class & _UDHI and pdu.short_message
                    and not self.handsets.may_reply(record.destination, pdu.data_coding, pdu.short_message)):
                return
            text = record.text()
        reply = self.handsets.reply_for(destination=record.destination, source=record.source, text=text)
        if reply is not None:
            self.scheduler.push(record.due + reply.after_s, Action.HANDSET, (acct, reply))

    def on_message(self, link: SmscLink, pdu: SubmitSm | DataSm, now: float, wall: float) -> None:
        """submit_sm (§4.4) and data_sm (§4.7)."""
        acct = link.account
        assert acct is not None  # the session lets only a bound ESME submit
        acct.submitted += 1
        faults = acct.faults
        if faults.active and self._fault(link, acct, pdu, now):
            return
        resp_cls = SubmitSmResp if type(pdu) is SubmitSm else DataSmResp
        status = acct.admit(now)
        if not status:
            destination = pdu.destination_addr
            outcome = self.plan.lookup(destination)
            status = outcome.submit_status or 0
            if not status:
                record = self._accept(acct, pdu, destination, outcome, now, wall)
                if type(record) is MessageRecord:
                    resp = resp_cls(sequence_number=pdu.sequence_number, message_id=record.message_id)
                    if (faults.active and record.receipt_wanted and faults.receipt_before_resp_rate
                            and faults.draw(self.rng, faults.receipt_before_resp_rate)):
                        self._receipt_first(link, acct, record, resp, now, wall)
                        return
                    self._respond(link, acct, resp, now)
                    self._schedule(acct, record, pdu.registered_delivery, now, wall)
                    return
                assert isinstance(record, int)
                status = record
        self._respond(link, acct, resp_cls(sequence_number=pdu.sequence_number, command_status=status), now)

    def _receipt_first(self, link: SmscLink, acct: AccountState, record: MessageRecord, resp: Pdu, now: float,
                       wall: float) -> None:
        """The fault "receipt before its submit_sm_resp": the final receipt goes now, the response after it."""
        record.due = now
        record.done_at = wall
        took = acct.deliver((record, False), now, wall)
        acct.responses[resp.command_status] += 1
        if took is None or took is link:
            link.send(resp, now)  # behind the receipt in this link's buffer (or the receipt waits: no order)
        else:
            # Another bind carries the receipt: hold the response until that write has surely gone out.
            self.scheduler.push(now + 0.05, Action.RESPONSE, (link, resp))

    def on_submit_multi(self, link: SmscLink, pdu: SubmitMulti, now: float, wall: float) -> None:
        """submit_multi (§4.5): one message id, and the destinations that failed listed in the response."""
        acct = link.account
        assert acct is not None
        acct.submitted += 1
        faults = acct.faults
        if faults.active and self._fault(link, acct, pdu, now):
            return
        status = acct.admit(now)
        if status:
            self._respond(link, acct, SubmitMultiResp(sequence_number=pdu.sequence_number, command_status=status),
                          now)
            return
        n = self._take_number()
        unsuccess: list[UnsuccessSme] = []
        accepted: list[MessageRecord] = []
        for dest in pdu.dest_address:
            if isinstance(dest, DistributionList):
                unsuccess.append(UnsuccessSme(0, 0, dest.dl_name[:20], Status.ESME_RCNTSUBDL))
                continue
            outcome = self.plan.lookup(dest.destination_addr)
            result: MessageRecord | int = outcome.submit_status or 0
            if not result:
                result = self._accept(acct, pdu, dest.destination_addr, outcome, now, wall, number=n)
            if isinstance(result, MessageRecord):
                accepted.append(result)
            else:
                unsuccess.append(UnsuccessSme(dest.dest_addr_ton, dest.dest_addr_npi, dest.destination_addr, result))
        message_id = accepted[0].message_id if accepted else ""
        self._respond(link, acct, SubmitMultiResp(sequence_number=pdu.sequence_number, message_id=message_id,
                                                  unsuccess_sme=tuple(unsuccess)), now)
        for record in accepted:
            self._schedule(acct, record, pdu.registered_delivery, now, wall)

    # ---- query_sm, cancel_sm, replace_sm -------------------------------------------------------------------

    def _own_pending(self, acct: AccountState, message_id: str, source: str, now: float) -> MessageRecord | None:
        record = self.store.get(message_id)
        if (record is None or record.account != acct.system_id or record.direction != "mt"
                or (source and source != record.source) or record.cancelled or now >= record.due):
            return None
        return record

    def on_query_sm(self, link: SmscLink, pdu: QuerySm, now: float, wall: float) -> None:
        """query_sm (§4.8): the state, final date and error code of a message this account sent."""
        acct = link.account
        assert acct is not None
        record = self.store.get(pdu.message_id)
        if (record is None or record.account != acct.system_id or record.direction != "mt"
                or (pdu.source_addr and pdu.source_addr != record.source)):
            resp = QuerySmResp(sequence_number=pdu.sequence_number, command_status=Status.ESME_RQUERYFAIL)
        else:
            state = record.state(now)
            final = record.cancelled or now >= record.due
            resp = QuerySmResp(sequence_number=pdu.sequence_number, message_id=pdu.message_id,
                               final_date=smpp_time(record.done_at) if final else "",
                               message_state=int(state.message_state),
                               error_code=min(record.err, 255) if state in _FAILURES else 0)
        acct.responses[resp.command_status] += 1
        link.send(resp, now)

    def on_cancel_sm(self, link: SmscLink, pdu: CancelSm, now: float, wall: float) -> None:
        """cancel_sm (§4.9): one pending message by id, or every pending one from source_addr to destination_addr."""
        acct = link.account
        assert acct is not None
        if pdu.message_id:
            record = self._own_pending(acct, pdu.message_id, pdu.source_addr, now)
            targets = [record] if record is not None else []
        else:
            targets = [r for r in self.store.newest_first()
                       if r.account == acct.system_id and r.direction == "mt" and not r.cancelled and now < r.due
                       and r.source == pdu.source_addr and r.destination == pdu.destination_addr
                       and (not pdu.service_type or r.pdu.service_type == pdu.service_type)]
        for record in targets:
            record.cancelled = True
            record.done_at = wall
        status = Status.ESME_ROK if targets else Status.ESME_RCANCELFAIL
        acct.responses[status] += 1
        link.send(CancelSmResp(sequence_number=pdu.sequence_number, command_status=status), now)

    def on_replace_sm(self, link: SmscLink, pdu: ReplaceSm, now: float, wall: float) -> None:
        """replace_sm (§4.10): new text and registered_delivery for a pending message."""
        acct = link.account
        assert acct is not None
        record = self._own_pending(acct, pdu.message_id, pdu.source_addr, now)
        if record is None or type(record.pdu) is DataSm:
            status = Status.ESME_RREPLACEFAIL
        else:
            old: Any = record.pdu
            record.pdu = old.replace(short_message=pdu.short_message, registered_delivery=pdu.registered_delivery,
                                     sm_default_msg_id=pdu.sm_default_msg_id)
            rd = pdu.registered_delivery & 3
            record.receipt_wanted = rd == 1 or rd == 3 or (rd == 2 and record.status in _FAILURES)
            status = Status.ESME_ROK
        acct.responses[status] += 1
        link.send(ReplaceSmResp(sequence_number=pdu.sequence_number, command_status=status), now)

    # ---- MO ------------------------------------------------------------------------------------------------

    def owner_of(self, shortcode: str) -> AccountState | None:
        """The account whose shortcodes cover `shortcode` (longest prefix)."""
        return self.shortcodes.lookup(shortcode)

    def inject_mo(self, source: str, destination: str, text: str, *, account: AccountState | None = None,
                  encoding: str = "auto", now: float | None = None, wall: float | None = None) -> MoResult:
        """Deliver an MO from handset `source` to `destination` as deliver_sm (segmented with UDH when long).

        Args:
            source: the handset's MSISDN (a leading + is dropped).
            destination: the shortcode or number it was sent to.
            text: the message text.
            account: the receiving account; by default the owner of `destination`.
            encoding: auto, gsm7, ucs2 or latin1.
            now: monotonic time (default: now).
            wall: wall-clock time (default: now).

        Raises:
            LookupError: no account owns `destination`.
            ValueError: the encoding is unknown or cannot carry the text, or the text needs over 255 parts.
        """
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        source = source.removeprefix("+")
        acct = account or self.owner_of(destination)
        if acct is None:
            raise LookupError(f"no account owns {destination}")
        if encoding not in _ALPHABETS:
            raise ValueError(f"unknown encoding {encoding!r}: expected one of {', '.join(_ALPHABETS)}")
        try:
            encoded = encode_message(text, alphabet=_ALPHABETS[encoding])
        except TextEncodeError as exc:
            raise ValueError(str(exc)) from None
        parts = split_message(encoded, Concatenation.UDH8, self.references.next(source))
        # The group is keyed by the first part's number: unique, unlike the 8-bit reference.
        key: GroupKey = (acct.system_id, source, destination, self._next_number, len(parts))
        ids: list[str] = []
        for seqnum, part in enumerate(parts, 1):
            pdu = DeliverSm(source_addr_ton=1, source_addr_npi=1, source_addr=source, destination_addr=destination,
                            esm_class=_UDHI if part.udhi else 0, data_coding=part.data_coding,
                            short_message=part.short_message)
            n = self._take_number()
            record = MessageRecord(acct.ids.resp(n), n, acct.system_id, "mo", pdu, source, destination, wall, now,
                                   wall, _DELIVERED)
            if len(parts) > 1:
                self.store.join_group(record, key, seqnum)
            self.store.add(record)
            ids.append(record.message_id)
            acct.deliver(pdu, now, wall)
        return MoResult(acct.system_id, len(parts), tuple(ids), bool(acct.backlog))

    # ---- the ticker ----------------------------------------------------------------------------------------

    def tick(self, now: float, wall: float) -> None:
        """Run every scheduled action due at `now`, then let each account's backlog drain."""
        accounts = self.accounts
        for action, item in self.scheduler.pop_due(now):
            if action is Action.FINAL:
                acct = accounts[item.account]
                acct.pending -= 1
                if item.receipt_wanted and not item.cancelled:
                    acct.deliver((item, False), now, wall)
            elif action is Action.ENROUTE:
                if not item.cancelled and now < item.due:
                    accounts[item.account].deliver((item, True), now, wall)
            elif action is Action.RESPONSE:
                link, resp = item
                if not link.closed:
                    try:
                        link.send(resp, now)
                    except LocalProtocolError:
                        pass  # the session moved on (unbound) while the response was held back
            elif action is Action.HANDSET:
                acct, reply = item
                self._handset_reply(acct, reply, now, wall)
            else:
                acct, pdu = item
                acct.deliver(pdu, now, wall)
        for acct in accounts.values():
            if acct.backlog and acct.receivers:
                acct.drain(now, wall)

    def _handset_reply(self, acct: AccountState, reply: HandsetReply, now: float, wall: float) -> None:
        try:
            self.inject_mo(reply.source, reply.destination, reply.text, account=self.owner_of(reply.destination)
                           or acct, now=now, wall=wall)
        except ValueError as exc:
            log.warning("handset reply not sent source=%s: %s", reply.source, exc)

    # ---- inspection ----------------------------------------------------------------------------------------

    def sample(self, now: float) -> None:
        """Record the counters for the rates of GET /stats (the ticker calls this once a second)."""
        self._samples.append((now, {a.system_id: (a.submitted, a.receipts_sent, a.mo_sent)
                                    for a in self.accounts.values()}))

    def _rates(self) -> dict[str, dict[str, float]]:
        samples = self._samples
        rates: dict[str, dict[str, float]] = {}
        if len(samples) < 2:
            return {a: {"submit_1s": 0.0, "submit_10s": 0.0, "receipts_1s": 0.0, "receipts_10s": 0.0}
                    for a in self.accounts}
        t1, last = samples[-1]
        t0, prev = samples[-2]
        t10, old = samples[max(0, len(samples) - 11)]
        for name, (sub, rec, _) in last.items():
            p = prev.get(name, (0, 0, 0))
            o = old.get(name, (0, 0, 0))
            dt1 = max(t1 - t0, 1e-9)
            dt10 = max(t1 - t10, 1e-9)
            rates[name] = {"submit_1s": (sub - p[0]) / dt1, "submit_10s": (sub - o[0]) / dt10,
                           "receipts_1s": (rec - p[1]) / dt1, "receipts_10s": (rec - o[1]) / dt10}
        return rates

    def statistics(self) -> SmscStatistics:
        """A snapshot of every counter."""
        return SmscStatistics(
            uptime_s=time.monotonic() - self.started,
            links=len(self.links),
            rejected_pdus=self.rejected,
            scheduled=len(self.scheduler),
            accounts=tuple(a.statistics() for a in self.accounts.values()),
            rates_per_s=self._rates(),
            store=self.store.statistics(),
            billing=self.ledger.statistics(),
        )
