"""The billing node of a cluster: one node at a time runs the carrier-billing flows, chosen by a lease in Redis.

Rule 1: the flows that keep subscribers' live state in memory (MO processing and its services, handshakes,
subscriptions and renewals, charge settlement, PIN verifications, payment requests and reminders) run on one node
of a cluster, the holder of the lease `leader:billing`. The lease is a key set with NX and a time to live of
`cluster.node_timeout_s`, renewed every `cluster.heartbeat_s` only while its value is still this node's.
Rule 2: a node that cannot show it still holds the lease stops at once (`LeadershipLost` ends the process;
systemd starts it again as a follower): it gives up before the lease can expire, so two nodes never run the flows
together. A node that stops cleanly deletes its lease, so another node takes over at its next heartbeat.
Rule 3: the others follow: every MO any node receives reaches the billing node through the `mo` stream (_mo.py),
every consent record reaches every node through the `consent` stream (_consent.py), charged MTs made final on
another node are found by the billing node's settlement poll (_charging.py), and the billing HTTP API of a follower
forwards each request to the billing node's `cluster.advertise_url` (or 503 when none holds the lease).
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._accept import ApiError
from ._httpclient import HttpClient, HttpClientError, InvalidUrl

if TYPE_CHECKING:
    from ._daemon import Gateway

__all__ = ["FORWARDED_HEADER", "BillingLeader", "LeadershipLost"]

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Smppgw-Forwarded-By"
_PASSED_HEADERS = ("authorization", "content-type", "idempotency-key", "accept")
_RETURNED_HEADERS = ("content-type", "retry-after", "location")
_MAX_BODY = 64 * 1024 * 1024  # a consent export or a page of charges, whole

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeadershipLost(RuntimeError):
    """This node could not renew its billing lease in time (Rule 2): it must stop."""


class BillingLeader:
    """This node's part in choosing the billing node, and the forwarding of the billing API (module rules).

    Args:
        gw: the gateway (its config, its ClusterStore, its HTTP address).
        heartbeat_s: how often the lease is renewed or, by a follower, looked at.
        ttl_s: the lease's time to live.
    """

    def __init__(self, gw: Gateway, *, heartbeat_s: float, ttl_s: float) -> None:
        self.gw = gw
        self.heartbeat_s = heartbeat_s
        self.ttl_s = ttl_s
        self.is_leader = False
        self.leader: str = ""  # the node holding the lease, as last seen ("" when none)
        self.leader_url: str = ""
        self.terms = 0
        self.forwarded_total = 0
        self._value = ""
        self._client: HttpClient | None = None

    @property
    def _redis(self) -> Any:
        return self.gw.store.inner.client  # type: ignore[attr-defined]

    @property
    def key(self) -> str:
        return str(self.gw.store.inner._key("leader:", "billing"))  # type: ignore[attr-defined]

    def advertise_url(self) -> str:
        """Where the other nodes reach this node's HTTP API: `cluster.advertise_url`, else its listener."""
        configured = self.gw.config.cluster.advertise_url
        if configured:
            return configured.rstrip("/")
        http = self.gw.http
        if http is None:
            return ""
        host = http.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.getfqdn()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{http.port}"

    def _learn(self, raw: bytes | None) -> None:
        node, _, rest = (raw or b"").decode().partition("|")
        url, _, _ = rest.partition("|")
        if node != self.leader:
            log.info("cluster: the billing node is %s", node or "none")
        self.leader, self.leader_url = node, url

    # ---- the lease (Rules 1 and 2) -------------------------------------------------------------------

    async def run(self, start: Callable[[], Awaitable[None]], *,
                  task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow until this node gets the lease, then `start()` the billing flows and hold it (raises
        LeadershipLost when it cannot)."""
        task_status.started()
        node = self.gw.config.node
        ttl_ms = max(1, int(self.ttl_s * 1000))
        while True:
            self._value = f"{node}|{self.advertise_url()}|{secrets.token_hex(8)}"
            sent = time.monotonic()
            try:
                with anyio.fail_after(self.heartbeat_s):
                    got = await self._redis.set(self.key, self._value, nx=True, px=ttl_ms)
                    if not got:
                        self._learn(await self._redis.get(self.key))
            except Exception as exc:
                log.warning("cluster: reading the billing lease failed: %s", exc)
                got = False
            if got:
                break
            await anyio.sleep(self.heartbeat_s)
        self.is_leader = True
        self.terms += 1
        self.leader, self.leader_url = node, self.advertise_url()
        log.warning("cluster: this node (%s) is the billing node now", node)
        try:
            await start()
            renewed = sent
            while True:
                await anyio.sleep(self.heartbeat_s)
                sent = time.monotonic()
                try:
                    with anyio.fail_after(self.heartbeat_s):
                        ok = await self._redis.eval(_RENEW, 1, self.key, self._value, ttl_ms)
                except Exception as exc:
                    log.warning("cluster: renewing the billing lease failed: %s", exc)
                    ok = None
                if ok == 1:
                    renewed = sent
                    continue
                if ok == 0:
                    raise LeadershipLost("the billing lease is held by another node now")
                if time.monotonic() - renewed > self.ttl_s - 2 * self.heartbeat_s:
                    raise LeadershipLost(f"the billing lease could not be renewed for "
                                         f"{time.monotonic() - renewed:.1f} s")
        except LeadershipLost as exc:
            self.is_leader = False
            log.critical("cluster: %s: stopping so that no two nodes run the billing flows", exc)
            raise
        finally:
            if self.is_leader:
                self.is_leader = False
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    try:
                        await self._redis.eval(_RELEASE, 1, self.key, self._value)
                        log.info("cluster: billing lease released")
                    except Exception as exc:
                        log.warning("cluster: releasing the billing lease failed: %s", exc)

    # ---- the billing API on a follower (Rule 3) ------------------------------------------------------

    def wrap(self, route: Route) -> Route:
        """`route`, answered here on the billing node and forwarded to it elsewhere."""
        endpoint = route.endpoint

        async def leader_only(request: Request) -> Response:
            if self.is_leader:
                return await endpoint(request)  # type: ignore[no-any-return]
            return await self.forward(request)

        methods = sorted(m for m in (route.methods or ()) if m != "HEAD")
        return Route(route.path, leader_only, methods=methods, name=route.name)

    async def forward(self, request: Request) -> Response:
        """Send `request` to the billing node and return its answer."""
        if request.headers.get(FORWARDED_HEADER):
            raise ApiError(503, "billing_unavailable",
                           "the billing node moved while this request was forwarded; try again")
        if not self.leader_url:
            raise ApiError(503, "billing_unavailable", "no node runs the billing flows right now; try again")
        if self._client is None:
            self._client = HttpClient(keep_body_bytes=_MAX_BODY, max_connections_per_origin=16)
        headers = {name: value for name in _PASSED_HEADERS if (value := request.headers.get(name)) is not None}
        headers[FORWARDED_HEADER] = self.gw.config.node
        target = self.leader_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        body = await request.body()
        try:
            with anyio.fail_after(30):
                answer = await self._client.request(request.method, target, body, headers)
        except (HttpClientError, InvalidUrl, TimeoutError, OSError) as exc:
            log.warning("cluster: forwarding %s %s to the billing node %s failed: %s", request.method,
                        request.url.path, self.leader, exc)
            raise ApiError(503, "billing_unavailable",
                           f"the billing node ({self.leader}) could not be reached; try again") from None
        self.forwarded_total += 1
        passed = {name: value for name in _RETURNED_HEADERS if (value := answer.header(name)) is not None}
        return Response(answer.body, status_code=answer.status_code, headers=passed)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def statistics(self) -> dict[str, Any]:
        return {"leader": self.leader, "is_leader": self.is_leader, "terms": self.terms,
                "forwarded": self.forwarded_total}
