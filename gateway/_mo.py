"""Mobile-originated messages: durable intake, reassembly, and in-order processing by the services.

Rule 1: a deliver_sm MO (or each part of a long one) is durable before its deliver_sm_resp: a part is kept as
an `mo_part` record until its message is complete, then the whole MO becomes an `mo` record in state
"received", and its parts become "used", in one commit.
Rule 2: MOs are processed one at a time, in arrival order, by `handler`, which returns the writes and the MT
messages the MO causes; these commit together with the MO's state "processed" (`GatewayCore.accept`), so a
crash before that commit makes the restart process the MO again from scratch, and never twice.
Rule 3: on a cluster (store.backend redis) every part, a one-part MO included, is kept as a pending `mo_part`,
which the same commit puts on the `mo` stream (_cluster, Rule 5); only the billing node (_leader) processes MOs:
it takes the parts from the stream (`run_cluster`), reassembles them whichever node received them, and acks each
entry in the commit that makes its part "used" or leaves it pending for a message not complete yet (a later
billing node's `restore` reads those pending parts back). A part seen once is never fed twice.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import msgspec

from routing import InvalidMsisdn, mask_msisdn
from smpp import DataSm, DeliverSm, EsmClass, Reassembler, decode_pdu, decode_text, encode_pdu, parse_udh

from ._model import Message
from ._store import Doc, Writes

__all__ = ["MoHandler", "MoIntake", "MoRecord", "MoResult"]

log = logging.getLogger(__name__)


class MoRecord(msgspec.Struct, kw_only=True):
    """One MO as received (reassembled when it came in parts): the body of an `mo` record."""

    id: str
    smsc: str
    msisdn: str  # the sender, normalised to international digits when the numbering rules allow
    source_addr: str  # the sender as the SMSC wrote it
    to: str  # the shortcode or long number it was sent to
    text: str
    data_coding: int
    parts: int = 1
    received_at: float
    state: str = "received"
    service: str | None = None
    kind: str | None = None
    detail: str = ""
    replies: list[str] = []  # ids of the MT messages it caused


@dataclass(slots=True)
class MoResult:
    """What processing an MO produced: state changes and MTs, committed together with the MO's new state."""

    writes: Writes = field(default_factory=Writes)
    messages: list[Message] = field(default_factory=list)
    service: str | None = None
    kind: str | None = None
    detail: str = ""


MoHandler = Callable[[MoRecord], Awaitable[MoResult]]

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(MoRecord)


def mo_doc(record: MoRecord) -> Doc:
    return Doc("mo", record.id, record.msisdn, record.to, record.state, None, record.received_at,
               _ENCODER.encode(record))


def decode_mo(doc: Doc) -> MoRecord:
    return _DECODER.decode(doc.body)


class MoIntake:
    """Takes MO deliver_sm from every connector (Rule 1) and feeds them to `handler` in order (Rule 2)."""

    def __init__(self, gw: Any, *, handler: MoHandler | None = None, wall: Callable[[], float] = time.time) -> None:
        self.gw = gw
        self.handler: MoHandler = handler or self._default_handler
        self.wall = wall
        self.reassembler = Reassembler(timeout_s=600.0)
        # (sender, shortcode) -> ids of the mo_part records not yet used by a complete MO.
        self._part_docs: dict[tuple[str, str], list[str]] = {}
        self._queue: deque[str] = deque()
        self._records: dict[str, MoRecord] = {}  # queued MOs received by this process (no store read needed)
        self._fed: OrderedDict[str, None] = OrderedDict()  # mo_part ids given to the reassembler (Rule 3)
        self.clustered = gw.config.store.backend == "redis"
        self._wake = anyio.Event()
        self._seq = 0
        self.batch_max = 256
        self.received_total = 0
        self.processed_total = 0
        self.failed_total = 0

    # ---- intake (called by connectors; Rule 1) --------------------------------------------------------

    def _new_id(self, now: float) -> str:
        self._seq += 1
        return f"mo-{int(now * 1000):x}-{self._seq:x}-{self.gw.config.node}"

    def _msisdn(self, source_addr: str) -> str:
        try:
            return str(self.gw.core.numbering.normalise(source_addr, country=self.gw.config.numbering.default_country))
        except InvalidMsisdn:
            return "".join(ch for ch in source_addr if ch.isdigit()) or source_addr

    @staticmethod
    def _parts_of(pdu: DeliverSm | DataSm) -> tuple[bytes, bytes | None, bool, tuple[int, int, int] | None, bool]:
        """(data, message_payload, udhi, sar, concatenated) of an MO PDU."""
        data = pdu.short_message if isinstance(pdu, DeliverSm) else b""
        payload = pdu.tlvs.get_bytes("message_payload")
        if payload is not None and not data:
            data = payload
        udhi = bool(pdu.esm_class & EsmClass.UDHI)
        sar = None
        ref = pdu.tlvs.get_int("sar_msg_ref_num")
        total = pdu.tlvs.get_int("sar_total_segments")
        seq = pdu.tlvs.get_int("sar_segment_seqnum")
        if ref is not None and total is not None and seq is not None:
            sar = (ref, total, seq)
        concat = sar is not None and sar[1] > 1
        if udhi and not concat:
            try:
                header, _ = parse_udh(data)
                concat = header.concat is not None and header.concat.total > 1
            except ValueError:
                concat = False
        return data, payload, udhi, sar, concat

    def on_deliver(self, smsc: str, pdu: DeliverSm | DataSm, writes: Writes) -> Callable[[], None] | None:
        """Record an MO deliver_sm into `writes`; returns what to do once they are durable."""
        now = self.wall()
        if self.clustered:  # Rule 3: the billing node takes it from the stream
            writes.docs.append(Doc("mo_part", self._new_id(now), pdu.source_addr, pdu.destination_addr, "pending",
                                   None, now, encode_pdu(pdu.replace(sequence_number=0)) + smsc.encode()))
            self.received_total += 1
            return None
        data, payload, udhi, sar, concat = self._parts_of(pdu)
        if not concat:
            return self._complete(smsc, pdu.source_addr, pdu.destination_addr, pdu.data_coding, data, udhi, 1, now,
                                  writes, used=[])
        part_id = self._new_id(now)
        writes.docs.append(Doc("mo_part", part_id, pdu.source_addr, pdu.destination_addr, "pending", None, now,
                               encode_pdu(pdu.replace(sequence_number=0)) + smsc.encode()))
        return self._take_part(smsc, pdu, part_id, data, payload, udhi, sar, now, writes)

    def _feed(self, doc: Doc, writes: Writes) -> Callable[[], None] | None:
        """A pending `mo_part` read back from the store (a restart, or the `mo` stream on a cluster): into the
        reassembler, or straight to an MO when it is one part. Returns what to do once `writes` are durable."""
        if doc.id in self._fed:
            return None
        self._fed[doc.id] = None
        if len(self._fed) > 100_000:
            self._fed.popitem(last=False)
        length = int.from_bytes(doc.body[:4], "big")  # the PDU's command_length; the SMSC name follows it
        pdu = decode_pdu(doc.body[:length])
        if not isinstance(pdu, DeliverSm | DataSm):
            return None
        smsc = doc.body[length:].decode()
        data, payload, udhi, sar, concat = self._parts_of(pdu)
        if not concat:
            return self._complete(smsc, pdu.source_addr, pdu.destination_addr, pdu.data_coding, data, udhi, 1,
                                  self.wall(), writes, used=[doc.id])
        return self._take_part(smsc, pdu, doc.id, data, payload, udhi, sar, self.wall(), writes)

    def _take_part(self, smsc: str, pdu: DeliverSm | DataSm, part_id: str, data: bytes, payload: bytes | None,
                   udhi: bool, sar: tuple[int, int, int] | None, now: float, writes: Writes
                   ) -> Callable[[], None] | None:
        done = self.reassembler.add(source=pdu.source_addr, destination=pdu.destination_addr,
                                    data_coding=pdu.data_coding, short_message=data if payload is None else b"",
                                    udhi=udhi, sar=sar, message_payload=payload, now=time.monotonic())
        key = (pdu.source_addr, pdu.destination_addr)
        self._part_docs.setdefault(key, []).append(part_id)
        if done is None or not done.complete:
            return None
        used = self._part_docs.pop(key, [])
        return self._complete(smsc, pdu.source_addr, pdu.destination_addr, done.data_coding, done.data, False,
                              done.part_count, now, writes, used=used, text=done.text())

    def _complete(self, smsc: str, source_addr: str, to: str, data_coding: int, data: bytes, udhi: bool,
                  parts: int, now: float, writes: Writes, *, used: list[str], text: str | None = None
                  ) -> Callable[[], None]:
        if text is None:
            if udhi:
                try:
                    _, data = parse_udh(data)
                except ValueError:
                    pass
            text = decode_text(data_coding, data)
        record = MoRecord(id=self._new_id(now), smsc=smsc, msisdn=self._msisdn(source_addr), source_addr=source_addr,
                          to=to, text=text, data_coding=data_coding, parts=parts, received_at=now)
        writes.docs.append(mo_doc(record))
        for pid in used:
            writes.docs.append(Doc("mo_part", pid, source_addr, to, "used", None, now, b""))
        self.received_total += 1
        if log.isEnabledFor(logging.INFO):  # masking the number costs about 1 us: only for a line that is written
            log.info("smsc=%s mo=%s from=%s to=%s received (%d part(s))", smsc, record.id,
                     mask_msisdn(record.msisdn), to, parts)

        def queue() -> None:
            self._records[record.id] = record
            self._queue.append(record.id)
            self._wake.set()
        return queue

    # ---- processing (Rule 2) -------------------------------------------------------------------------

    def restore(self) -> int:
        """After a restart: queue every MO still "received" and reload pending parts. Returns the MOs queued."""
        store = self.gw.store
        pending = store.docs("mo", state="received")
        for doc in pending:
            self._queue.append(doc.id)
        for doc in store.docs("mo_part", state="pending"):
            writes = Writes()
            after = self._feed(doc, writes)
            if after is not None:  # the restart completed a message: make it durable, then queue it
                self.gw.store.write_nowait(writes)
                after()
        if self._queue:
            self._wake.set()
        return len(pending)

    async def run_cluster(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """On the billing node of a cluster: take MO parts from the `mo` stream, whichever node received them,
        and feed them to the reassembler and the queue `run` processes (Rule 3). Start after `restore`."""
        from ._cluster import MO_STREAM

        store = self.gw.store
        inner = store.inner
        node = self.gw.config.node
        await inner.ensure_group(MO_STREAM)
        # What earlier billing nodes took and did not finish: theirs no more (this node holds the lease).
        entries = await inner.reclaim(MO_STREAM, node, 0, 1_000_000)
        task_status.started()
        while True:
            if entries:
                try:
                    await self._take_entries(entries)
                except Exception as exc:  # Redis away (a failover): the entries stay ours, pending; try them again
                    log.warning("mo: %d MO parts could not be taken (%s); trying again", len(entries), exc)
                    for entry in entries:
                        self._fed.pop(entry.message_id, None)
                    await anyio.sleep(1.0)
                    continue
            try:
                entries = await inner.claim(MO_STREAM, node, self.batch_max, block_ms=1000)
            except Exception:
                log.warning("mo: reading the MO stream failed", exc_info=True)
                entries = []
                await anyio.sleep(0.5)

    async def _take_entries(self, entries: list[Any]) -> None:
        from ._redis import RedisWrites

        inner = self.gw.store.inner
        writes = RedisWrites()
        afters = []
        docs = await inner.adoc_many("mo_part", [entry.message_id for entry in entries])
        for entry, doc in zip(entries, docs, strict=True):
            writes.ack.append((entry.stream, entry.entry_id))
            if doc is None or doc.state != "pending":
                continue
            after = self._feed(doc, writes)
            if after is not None:
                afters.append(after)
        await self.gw.store.write(writes)  # the MOs complete now, their parts used, the entries acked: together
        for after in afters:
            after()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Process queued MOs in order until cancelled.

        The MOs queued when a batch starts (up to `batch_max`) are handled one after the other, in order, and what
        they caused commits in one `accept`: a crash before that commit has the restart handle them all again. On
        one node the next batch does not wait for that commit: its writes join the store's batches after these,
        so the commits keep the MOs' order, and its replies are queued once durable. Waiting held every stage of
        the daemon behind the same commit (bench/RESULTS.md, "The MO path stops waiting for commits").
        """
        task_status.started()
        await self.gw.store.write(Writes())  # a barrier: what `restore` wrote is durable before processing
        while True:
            while not self._queue:
                self._wake = anyio.Event()
                await self._wake.wait()
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.batch_max))]
            writes = Writes()
            messages: list[Message] = []
            done = 0
            for mo_id in batch:
                try:
                    if await self._process(mo_id, writes, messages):
                        done += 1
                except Exception:
                    self.failed_total += 1
                    log.exception("mo=%s processing failed; it stays 'received' and is retried on restart", mo_id)
            if writes or messages:
                await self.gw.core.accept_in_order(messages, writes)
            self.processed_total += done

    async def _process(self, mo_id: str, writes: Writes, messages: list[Message]) -> bool:
        record = self._records.pop(mo_id, None)
        if record is None:  # queued by `restore`: read it back
            doc = self.gw.store.doc("mo", mo_id)
            if doc is None or doc.state != "received":
                return False
            record = decode_mo(doc)
        result = await self.handler(record)
        record.state = "processed"
        record.service = result.service
        record.kind = result.kind
        record.detail = result.detail
        record.replies = [m.id for m in result.messages]
        writes.extend(result.writes)
        writes.docs.append(mo_doc(record))
        messages.extend(result.messages)
        return True

    async def _default_handler(self, record: MoRecord) -> MoResult:
        decision = self.gw.core.config.mo_router().decide(to=record.to, text=record.text)
        log.info("mo=%s to=%s %s (no MO services are running)", record.id, record.to, decision.kind.value)
        return MoResult(service=decision.service, kind=decision.kind.value, detail=decision.reason)

    def statistics(self) -> dict[str, int]:
        return {"received": self.received_total, "processed": self.processed_total, "failed": self.failed_total,
                "queued": len(self._queue)}
