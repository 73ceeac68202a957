"""The outgoing HTTP client against a scripted HTTP/1.1 server on 127.0.0.1:0 (plain TCP and TLS).

The server parses requests with httptools and writes raw bytes chosen by each test, so chunked bodies, early
closes and garbage are exact. TLS certificates come from the openssl command line (neither trustme nor
cryptography is installed). Every test runs on asyncio with uvloop and on trio.
"""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc
import httptools
import pytest
from anyio.streams.tls import TLSListener

from gateway._httpclient import (
    HttpClient,
    HttpClientError,
    HttpConnectError,
    HttpConnectionLost,
    HttpProtocolError,
    HttpTimeout,
    InvalidUrl,
    parse_url,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[pytest.param(("asyncio", {"use_uvloop": True}), id="asyncio+uvloop"),
                        pytest.param(("trio", {}), id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param  # type: ignore[no-any-return]


# ---- the scripted server ------------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the server parsed it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    connection: int

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class Reply:
    """What the server does: write `parts` one by one (yielding between them), then close if `close`."""

    parts: list[bytes]
    close: bool = False


def ok(body: bytes = b"", *extra: str) -> Reply:
    head = "".join(f"{h}\r\n" for h in extra)
    return Reply([b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), head.encode()) + body])


Answer = Callable[[Seen], Awaitable[Reply | None]]


class _Parsing:
    def __init__(self, connection: int) -> None:
        self.connection = connection
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.done: list[Seen] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode(), value.decode()))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done.append(Seen(self.parser.get_method().decode(), self.url.decode(), self.headers, self.body,
                              self.connection))
        self.url, self.headers, self.body = b"", [], b""


@dataclass
class Server:
    answer: Answer
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    live: int = 0
    peak: int = 0
    closed: int = 0

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        self.connections += 1
        self.live += 1
        self.peak = max(self.peak, self.live)
        parsing = _Parsing(self.connections)
        try:
            async with stream:
                while True:
                    try:
                        data = await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                    parsing.parser.feed_data(data)
                    seen, parsing.done = parsing.done, []
                    for request in seen:
                        self.requests.append(request)
                        reply = await self.answer(request)
                        if reply is None:
                            return
                        for i, part in enumerate(reply.parts):
                            if i:
                                await anyio.sleep(0.002)  # separate reads at the client
                            await stream.send(part)
                        if reply.close:
                            return
        finally:
            self.live -= 1
            self.closed += 1


async def always_ok(_: Seen) -> Reply:
    return ok(b"fine")


def held_until(gate: anyio.Event, body: bytes | None = None) -> Answer:
    """An answer that waits for `gate` before its 200 (only for requests with `body`, when one is given)."""

    async def held(seen: Seen) -> Reply:
        if body is None or seen.body == body:
            await gate.wait()
        return ok()

    return held


@asynccontextmanager
async def serving(answer: Answer = always_ok, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(answer)
    listener: anyio.abc.Listener[anyio.abc.ByteStream]
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server.port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    listener = tcp if tls is None else TLSListener(tcp, tls, standard_compatible=False)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        with anyio.fail_after(10):
            yield server
        tg.cancel_scope.cancel()


async def until(cond: Callable[[], bool], timeout_s: float = 3.0) -> None:
    with anyio.fail_after(timeout_s):
        while not cond():
            await anyio.sleep(0.002)


# ---- requests on the wire --------------------------------------------------------------------------------------


async def test_a_post_carries_host_length_agent_headers_and_body() -> None:
    async with serving() as srv, HttpClient(user_agent="smppgw-test/1") as client:
        resp = await client.post(f"http://127.0.0.1:{srv.port}/cb/status?a=1&b=x%20y", b'{"id":"1"}',
                                 {"Content-Type": "application/json", "X-Smppgw-Timestamp": "1700000000"})
    assert (resp.status_code, resp.body, resp.body_size_bytes) == (200, b"fine", 4)
    assert resp.header("content-length") == "4" and resp.header("x-absent") is None
    [seen] = srv.requests
    assert (seen.method, seen.target, seen.body) == ("POST", "/cb/status?a=1&b=x%20y", b'{"id":"1"}')
    assert seen.header("Host") == [f"127.0.0.1:{srv.port}"]
    assert seen.header("Content-Length") == ["10"]
    assert seen.header("User-Agent") == ["smppgw-test/1"]
    assert seen.header("Content-Type") == ["application/json"]
    assert seen.header("X-Smppgw-Timestamp") == ["1700000000"]
    assert seen.header("Connection") == [] and seen.header("Transfer-Encoding") == []


async def test_keep_alive_reuses_one_connection() -> None:
    async with serving() as srv, HttpClient() as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/x")
        for i in range(5):
            assert (await client.post(url, b"%d" % i)).status_code == 200
        st = client.statistics()
    assert srv.connections == 1 and [r.body for r in srv.requests] == [b"0", b"1", b"2", b"3", b"4"]
    assert (st.requests, st.connects, st.connections, st.idle, st.in_use, st.retries) == (5, 1, 1, 1, 0, 0)


class CountingStream(anyio.abc.ByteStream):
    """A byte stream that counts the writes made on it."""

    def __init__(self, inner: anyio.abc.ByteStream, writes: list[bytes]) -> None:
        self.inner = inner
        self.writes = writes

    async def send(self, item: bytes) -> None:
        self.writes.append(item)
        await self.inner.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_each_request_is_one_write_and_the_hook_replaces_tcp() -> None:
    writes: list[bytes] = []
    opened: list[tuple[str, str, int]] = []

    async def connect(scheme: str, host: str, port: int) -> anyio.abc.ByteStream:
        opened.append((scheme, host, port))
        return CountingStream(await anyio.connect_tcp(host, port), writes)

    async with serving() as srv, HttpClient(connect=connect) as client:
        for _ in range(3):
            await client.post(f"http://127.0.0.1:{srv.port}/x", b"x" * 3000, {"A": "b"})
    assert opened == [("http", "127.0.0.1", srv.port)]
    assert len(writes) == 3 and all(w.startswith(b"POST /x HTTP/1.1\r\n") and w.endswith(b"x" * 3000)
                                    for w in writes)


async def test_tcp_nodelay_is_set() -> None:
    async with serving() as srv, HttpClient() as client:
        await client.post(f"http://127.0.0.1:{srv.port}/", b"")
        [conn] = next(iter(client._pools.values())).idle
        sock = conn.stream.extra(anyio.abc.SocketAttribute.raw_socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_a_get_without_body_sends_no_content_length() -> None:
    async with serving() as srv, HttpClient() as client:
        await client.request("GET", f"http://127.0.0.1:{srv.port}/health")
        await client.post(f"http://127.0.0.1:{srv.port}/empty", b"")
    get, post = srv.requests
    assert (get.method, get.target, get.header("Content-Length")) == ("GET", "/health", [])
    assert post.header("Content-Length") == ["0"]


async def test_header_injection_and_head_are_refused() -> None:
    async with HttpClient() as client:
        with pytest.raises(ValueError, match="CR or LF"):
            await client.post("http://127.0.0.1:9/", b"", {"X-A": "1\r\nX-Injected: 2"})
        with pytest.raises(ValueError, match="HEAD"):
            await client.request("HEAD", "http://127.0.0.1:9/")
        assert client.statistics().requests == 0


# ---- response framing ------------------------------------------------------------------------------------------


async def test_a_chunked_body_is_read_to_its_end_across_reads_and_trailers() -> None:
    async def chunked(_: Seen) -> Reply:
        return Reply([b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                      b"6\r\n, worl\r\n1;ext=1\r\nd\r\n", b"0\r\nX-Trailer: t\r\n\r\n"])

    async with serving(chunked) as srv, HttpClient() as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/")
        first = await client.post(url, b"a")
        second = await client.post(url, b"b")
    assert (first.status_code, first.body, first.body_size_bytes) == (202, b"hello, world", 12)
    assert first.header("x-trailer") == "t" and second.body == b"hello, world"
    assert srv.connections == 1  # the whole body was consumed, so the connection carried the second request


async def test_only_the_first_keep_body_bytes_are_kept() -> None:
    big = bytes(range(256)) * 40

    async def large(_: Seen) -> Reply:
        return Reply([b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n" % len(big), big[:4000], big[4000:]])

    async with serving(large) as srv, HttpClient(keep_body_bytes=100) as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/")
        resp = await client.post(url, b"")
        await client.post(url, b"")
    assert (resp.status_code, resp.body, resp.body_size_bytes) == (500, big[:100], 10240)
    assert srv.connections == 1


async def test_connection_close_is_honoured() -> None:
    async def closing(_: Seen) -> Reply:
        return ok(b"bye", "Connection: close")

    async with serving(closing) as srv, HttpClient() as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/")
        assert (await client.post(url, b"")).body == b"bye"
        assert client.statistics().connections == 0
        await client.post(url, b"")
        await until(lambda: srv.closed == 2)
    assert srv.connections == 2 and client.statistics().retries == 0


async def test_a_body_delimited_by_the_end_of_the_connection() -> None:
    async def http10(_: Seen) -> Reply:
        return Reply([b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ", b"part two"], close=True)

    async with serving(http10) as srv, HttpClient() as client:
        resp = await client.post(f"http://127.0.0.1:{srv.port}/", b"")
        assert (resp.status_code, resp.body) == (200, b"part one, part two")
        assert client.statistics().connections == 0
    assert srv.connections == 1


async def test_interim_100_continue_is_skipped() -> None:
    async def continuing(_: Seen) -> Reply:
        return Reply([b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 204 No Content\r\nX-Final: 1\r\n\r\n"])

    async with serving(continuing) as srv, HttpClient() as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/")
        resp = await client.post(url, b"")
        assert (resp.status_code, resp.header("x-final"), resp.body) == (204, "1", b"")
        await client.post(url, b"")
    assert srv.connections == 1


async def test_redirects_are_answers_not_followed() -> None:
    async def moved(_: Seen) -> Reply:
        return Reply([b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"])

    async with serving(moved) as srv, HttpClient() as client:
        resp = await client.post(f"http://127.0.0.1:{srv.port}/", b"")
    assert resp.status_code == 302 and resp.header("location") == "/elsewhere"
    assert [r.target for r in srv.requests] == ["/"]


async def test_an_unreadable_answer_is_a_protocol_error_and_closes_the_connection() -> None:
    async def garbage(_: Seen) -> Reply:
        return Reply([b"SMPP/3.4 what\r\n\r\n"])

    async with serving(garbage) as srv, HttpClient() as client:
        with pytest.raises(HttpProtocolError, match=f"127.0.0.1:{srv.port}: unreadable"):
            await client.post(f"http://127.0.0.1:{srv.port}/", b"")
        assert client.statistics().connections == 0
        await until(lambda: srv.closed == 1)


async def test_bytes_after_a_complete_answer_keep_the_answer_and_drop_the_connection() -> None:
    async def trailing(_: Seen) -> Reply:
        return Reply([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"])

    async with serving(trailing) as srv, HttpClient() as client:
        resp = await client.post(f"http://127.0.0.1:{srv.port}/", b"")
        assert (resp.status_code, resp.body) == (200, b"ok")
        assert client.statistics().connections == 0
    assert srv.connections == 1


async def test_an_endless_head_is_refused() -> None:
    async def endless(_: Seen) -> Reply:
        return Reply([b"HTTP/1.1 200 OK\r\n"] + [b"X-Filler: " + b"f" * 8000 + b"\r\n"] * 10)

    async with serving(endless) as srv, HttpClient() as client:
        with pytest.raises(HttpProtocolError, match="longer than"):
            await client.post(f"http://127.0.0.1:{srv.port}/", b"")


# ---- failures and retries --------------------------------------------------------------------------------------


async def test_a_pooled_connection_the_server_closed_is_retried_once_on_a_new_one() -> None:
    async def answer_then_close(_: Seen) -> Reply:
        return Reply(ok(b"ok").parts, close=True)  # keep-alive by its headers, but closed right after

    async with serving(answer_then_close) as srv, HttpClient() as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/")
        await client.post(url, b"1")
        assert client.statistics().idle == 1
        await until(lambda: srv.closed == 1)
        resp = await client.post(url, b"2")
        st = client.statistics()
    assert resp.body == b"ok" and (st.retries, st.connects) == (1, 2)
    assert [(r.body, r.connection) for r in srv.requests] == [(b"1", 1), (b"2", 2)]


async def test_no_retry_once_the_answer_has_begun() -> None:
    async def half_then_close(seen: Seen) -> Reply:
        if seen.body == b"1":
            return ok(b"ok")
        return Reply([b"HTTP/1.1 200 OK\r\nContent-Len"], close=True)

    async with serving(half_then_close) as srv, HttpClient() as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/")
        await client.post(url, b"1")
        with pytest.raises(HttpConnectionLost) as info:
            await client.post(url, b"2")
        assert info.value.response_started and client.statistics().retries == 0
    assert srv.connections == 1 and len(srv.requests) == 2


async def test_no_retry_on_a_fresh_connection() -> None:
    async def hang_up(_: Seen) -> None:
        return None

    async with serving(hang_up) as srv, HttpClient() as client:
        with pytest.raises(HttpConnectionLost, match="closed before the whole response") as info:
            await client.post(f"http://127.0.0.1:{srv.port}/", b"")
        assert not info.value.response_started
        st = client.statistics()
    assert srv.connections == 1 and (st.retries, st.connections, st.in_use) == (0, 0, 0)


async def test_a_stale_connection_whose_retry_fails_too_raises() -> None:
    replies = [Reply(ok(b"ok").parts, close=True), None]

    async def then_hang_up(_: Seen) -> Reply | None:
        return replies.pop(0) if replies else None

    async with serving(then_hang_up) as srv, HttpClient() as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/")
        await client.post(url, b"")
        await until(lambda: srv.closed == 1)
        with pytest.raises(HttpConnectionLost):
            await client.post(url, b"")
        assert client.statistics().retries == 1
    assert srv.connections == 2  # one retry, not more


async def test_a_refused_connection_is_a_connect_error() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    async with HttpClient() as client:
        with pytest.raises(HttpConnectError, match=f"127.0.0.1:{port}: cannot connect"):
            await client.post(f"http://127.0.0.1:{port}/", b"")
        st = client.statistics()
    assert (st.connections, st.in_use, st.connects) == (0, 0, 0)


async def test_the_callers_timeout_cancels_the_request_and_closes_its_connection() -> None:
    release = anyio.Event()
    async with serving(held_until(release)) as srv, HttpClient() as client:
        with pytest.raises(TimeoutError), anyio.fail_after(0.05):
            await client.post(f"http://127.0.0.1:{srv.port}/", b"")
        st = client.statistics()
        assert (st.connections, st.in_use, st.idle) == (0, 0, 0)
        release.set()
        await until(lambda: srv.closed == 1)


async def test_timeout_s_ends_a_request_whose_answer_does_not_come_and_closes_its_connection() -> None:
    release = anyio.Event()
    async with serving(held_until(release)) as srv, HttpClient() as client:
        started = anyio.current_time()
        with pytest.raises(HttpTimeout, match=rf"127\.0\.0\.1:{srv.port}: no answer within 0\.05 s"):
            await client.post(f"http://127.0.0.1:{srv.port}/", b"", timeout_s=0.05)
        assert 0.04 <= anyio.current_time() - started < 1.0
        st = client.statistics()
        assert (st.connections, st.in_use, st.idle) == (0, 0, 0)
        release.set()
        await until(lambda: srv.closed == 1)


async def test_an_answer_within_timeout_s_leaves_its_connection_pooled_with_no_deadline_left() -> None:
    slow = anyio.Event()
    async with serving(held_until(slow, b"slow")) as srv, HttpClient() as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/")
        assert (await client.post(url, b"fast", timeout_s=0.1)).status_code == 200
        await anyio.sleep(0.15)  # past that request's deadline
        async with anyio.create_task_group() as tg:
            async def later() -> None:
                await anyio.sleep(0.1)
                slow.set()

            tg.start_soon(later)
            assert (await client.post(url, b"slow")).status_code == 200  # no timeout: it waits for the answer
        st = client.statistics()
    assert (st.connects, st.requests, st.idle) == (1, 2, 1) and srv.connections == 1


async def test_timeout_s_covers_the_wait_for_a_connection_of_the_pool() -> None:
    gate = anyio.Event()
    async with serving(held_until(gate)) as srv, HttpClient(max_connections_per_origin=1) as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/")
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.post, url, b"first")
            await until(lambda: client.statistics().in_use == 1)
            with pytest.raises(HttpTimeout):
                await client.post(url, b"second", timeout_s=0.05)
            assert client.statistics().waiting == 0  # it left the queue
            gate.set()
        st = client.statistics()
    assert (st.in_use, st.waiting, st.connections) == (0, 0, 1) and [r.body for r in srv.requests] == [b"first"]


async def test_timeout_s_covers_connecting() -> None:
    async def never(scheme: str, host: str, port: int) -> anyio.abc.ByteStream:
        await anyio.sleep_forever()
        raise AssertionError

    async with HttpClient(connect=never) as client:
        with pytest.raises(HttpTimeout, match=r"no answer within 0\.05 s"):
            await client.post("http://127.0.0.1:9/", b"", timeout_s=0.05)
        st = client.statistics()
    assert (st.connections, st.in_use, st.connects) == (0, 0, 0)


# ---- the pool ------------------------------------------------------------------------------------------------


async def test_connections_per_origin_are_bounded() -> None:
    gate = anyio.Event()
    done: list[int] = []
    async with serving(held_until(gate)) as srv, HttpClient(max_connections_per_origin=2) as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/")

        async def one(i: int) -> None:
            await client.post(url, b"%d" % i)
            done.append(i)

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(one, i)
            await until(lambda: len(srv.requests) == 2 and client.statistics().waiting == 4)
            st = client.statistics()
            assert (st.in_use, st.waiting, st.connections) == (2, 4, 2)
            gate.set()
        st = client.statistics()
    assert srv.peak == 2 and srv.connections == 2 and sorted(done) == list(range(6))
    assert (st.in_use, st.waiting, st.idle, st.connections) == (0, 0, 2, 2)


async def test_requests_waiting_for_a_connection_are_served_in_arrival_order() -> None:
    gate = anyio.Event()
    async with serving(held_until(gate, b"0")) as srv, HttpClient(max_connections_per_origin=1) as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/")

        async def queued(n: int) -> None:
            await until(lambda: client.statistics().in_use + client.statistics().waiting == n)

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(client.post, url, b"%d" % i)
                await queued(i + 1)
            gate.set()
    assert [r.body for r in srv.requests] == [b"0", b"1", b"2", b"3", b"4", b"5"] and srv.connections == 1


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    gate = anyio.Event()

    async def held(seen: Seen) -> Reply:
        if seen.body == b"first":
            await gate.wait()
        return ok(seen.body)

    async with serving(held) as srv, HttpClient(max_connections_per_origin=1) as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/")
        results: list[bytes] = []

        async def post(body: bytes) -> None:
            results.append((await client.post(url, body)).body)

        async with anyio.create_task_group() as tg:
            tg.start_soon(post, b"first")
            await until(lambda: len(srv.requests) == 1)
            with anyio.move_on_after(0.02):
                await client.post(url, b"cancelled")
            assert client.statistics().waiting == 0
            tg.start_soon(post, b"third")
            await until(lambda: client.statistics().waiting == 1)
            gate.set()
        st = client.statistics()
    assert results == [b"first", b"third"] and [r.body for r in srv.requests] == [b"first", b"third"]
    assert (st.in_use, st.waiting, st.connections) == (0, 0, 1)


async def test_an_origin_is_scheme_host_and_port() -> None:
    async with serving() as a, serving() as b, HttpClient(max_connections_per_origin=1) as client:
        await client.post(f"http://127.0.0.1:{a.port}/", b"")
        await client.post(f"http://127.0.0.1:{b.port}/", b"")
        await client.post(f"http://127.0.0.1:{a.port}/other", b"")
        assert client.statistics().connections == 2
    assert (a.connections, len(a.requests), b.connections) == (1, 2, 1)


async def test_idle_connections_expire() -> None:
    now = [1000.0]
    async with serving() as srv, HttpClient(idle_timeout_s=30.0, mono=lambda: now[0]) as client:
        url = parse_url(f"http://127.0.0.1:{srv.port}/")
        await client.post(url, b"")
        now[0] += 29.0
        await client.post(url, b"")
        assert srv.connections == 1
        now[0] += 30.0  # idle for the whole timeout: closed, not reused (Rule 5)
        await client.post(url, b"")
        assert srv.connections == 2 and client.statistics().connections == 1
        assert await client.close_expired() == 0
        now[0] += 30.0
        assert await client.close_expired() == 1
        assert client.statistics().connections == 0
        await until(lambda: srv.closed == 2)


async def test_a_closed_client_refuses_requests_and_closes_its_connections() -> None:
    gate = anyio.Event()
    async with serving(held_until(gate, b"slow")) as srv:
        client = HttpClient()
        url = parse_url(f"http://127.0.0.1:{srv.port}/")
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.post, url, b"slow")
            await until(lambda: len(srv.requests) == 1)
            await client.post(url, b"fast")  # on a second connection, idle after this
            assert client.statistics().connections == 2
            await client.aclose()
            assert client.statistics().connections == 1  # the idle one closed, the busy one not yet
            gate.set()
        assert client.statistics().connections == 0
        with pytest.raises(HttpClientError, match="closed"):
            await client.post(url, b"")
        await until(lambda: srv.closed == 2)


# ---- TLS -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA and a server certificate for IP 127.0.0.1 signed by it, made with the openssl command line."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=smppgw test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                               "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                               "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return Certs(d / "ca.pem", d / "server.pem", d / "server.key")


def server_context(certs: Certs) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.cert, certs.key)
    return ctx


async def test_https_with_a_trusted_certificate_keeps_the_connection_alive(certs: Certs) -> None:
    trusting = ssl.create_default_context(cafile=str(certs.ca))
    async with serving(tls=server_context(certs)) as srv, HttpClient(ssl_context=trusting) as client:
        url = parse_url(f"https://127.0.0.1:{srv.port}/secure")
        for _ in range(3):
            resp = await client.post(url, b'{"id":"1"}')
            assert (resp.status_code, resp.body) == (200, b"fine")
    assert srv.connections == 1 and [r.target for r in srv.requests] == ["/secure"] * 3
    assert srv.requests[0].header("Host") == [f"127.0.0.1:{srv.port}"]


async def test_https_verifies_the_certificate_with_the_system_cas_by_default(certs: Certs) -> None:
    async with serving(tls=server_context(certs)) as srv, HttpClient() as client:
        with pytest.raises(HttpConnectError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            await client.post(f"https://127.0.0.1:{srv.port}/", b"")
        assert client.ssl_context is not None and client.ssl_context.verify_mode == ssl.CERT_REQUIRED
        assert client.ssl_context.check_hostname
        assert client.statistics().connections == 0
    assert srv.requests == []


# ---- URLs ------------------------------------------------------------------------------------------------------


def test_urls_parse_into_origin_target_and_host_header() -> None:
    u = parse_url("https://Hooks.Example.com/a/b?x=1#frag")
    assert (u.scheme, u.host, u.port, u.target, u.origin) == ("https", "hooks.example.com", 443, "/a/b?x=1",
                                                              ("https", "hooks.example.com", 443))
    assert u.head == b" /a/b?x=1 HTTP/1.1\r\nHost: hooks.example.com\r\n"
    assert str(u) == "https://hooks.example.com/a/b?x=1" and u.where == "hooks.example.com:443"
    v = parse_url("http://10.0.0.1:8080")
    assert (v.port, v.target, v.head) == (8080, "/", b" / HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n")
    w = parse_url("http://[::1]:81/p")
    assert (w.host, w.where, str(w)) == ("::1", "[::1]:81", "http://[::1]:81/p")
    assert w.head == b" /p HTTP/1.1\r\nHost: [::1]:81\r\n"


def test_urls_are_percent_encoded_and_names_idna() -> None:
    u = parse_url("http://bücher.example/a b/é?q=ü v&k=%41")
    assert u.host == "xn--bcher-kva.example"  # RFC 3492 / IDNA form of "bücher"
    assert u.target == "/a%20b/%C3%A9?q=%C3%BC%20v&k=%41"


def test_credentials_become_basic_authorization_and_stay_out_of_logs() -> None:
    u = parse_url("https://Aladdin:open%20sesame@example.com/cb")
    # RFC 7617 §2's example: "Aladdin" / "open sesame".
    assert b"Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n" in u.head
    assert base64.b64decode("QWxhZGRpbjpvcGVuIHNlc2FtZQ==") == b"Aladdin:open sesame"
    assert "sesame" not in str(u) and "sesame" not in repr(u) and "Aladdin" not in u.where


@pytest.mark.parametrize("text", ["ftp://example.com/x", "example.com/x", "http://", "http:///path",
                                  "http://example.com:99999/", "http://example.com:0/", "http://exa mple.com/",
                                  "http://[::zz]/", "mailto:a@example.com"])
def test_what_is_not_an_http_url_is_refused(text: str) -> None:
    with pytest.raises(InvalidUrl):
        parse_url(text)
