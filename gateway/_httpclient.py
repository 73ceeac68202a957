"""A lean HTTP/1.1 client for the gateway's outgoing requests (status callbacks, MO forwards).

Rule 1: one request at a time per connection; a connection goes back to its origin's pool only when its whole
response was read and neither side asked to close it (RFC 9112 §9.3, `Connection: close`, HTTP/1.0 without
keep-alive, a body delimited by the end of the connection).
Rule 2: each request goes out in one write, head and body joined (two writes cost a second system call and, with
Nagle's algorithm, the peer's delayed ACK; TCP_NODELAY is set on every socket as well).
Rule 3: a request on a pooled connection that fails before any byte of its response arrived is sent once more on
a new connection: the server closed the idle connection while it sat in the pool (RFC 9112 §9.3.1). A request
on a fresh connection, or one whose response had begun, is never repeated.
Rule 4: at most `max_connections_per_origin` connections per (scheme, host, port), idle ones included; a request
that finds none free waits for one, first come first served.
Rule 5: a connection idle for `idle_timeout_s` or longer is closed, not reused.

Rule 6: `timeout_s` bounds a request from its call to the end of its response: waiting for a slot of the pool,
connecting, sending, reading. Past it the request raises HttpTimeout and its connection is closed, its state
unknown. On a LoopStream connection (plain HTTP on asyncio) the stream's own deadline does it
(gateway/_stream.py Rule 4): no cancel scope per request, about 11 us less (bench/RESULTS.md, "A request's
timeout without a cancel scope"). Elsewhere (the pool's wait, connecting, TLS, trio) a cancel scope does.

A caller may also bound a request with its own cancel scope; a request cancelled midway closes its connection,
whose state is then unknown. Redirects are not followed (a 3xx is an answer like any other). The response body is
read to its end and dropped, except its first `keep_body_bytes` (for logging). Responses are parsed by httptools
(llhttp, the parser uvicorn uses). Runs on AnyIO's asyncio backend (with or without uvloop) and on trio.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import quote, unquote, urlsplit

import anyio
import anyio.abc
import httptools
from anyio.streams.tls import TLSStream

from ._stream import DeadlineExceeded, LoopStream, connect_tcp

__all__ = [
    "Connect",
    "HttpClient",
    "HttpClientError",
    "HttpClientStatistics",
    "HttpConnectError",
    "HttpConnectionLost",
    "HttpProtocolError",
    "HttpTimeout",
    "InvalidUrl",
    "Response",
    "Url",
    "parse_url",
]

Connect = Callable[[str, str, int], Awaitable[anyio.abc.ByteStream]]
"""Opens a byte stream to (scheme, host, port), TLS included for https: replaces TCP (tests, proxies)."""

MAX_HEAD_BYTES = 64 * 1024
"""A response whose status line and headers are longer than this is refused (llhttp sets no limit of its own)."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"  # RFC 3986 §3.3 pchar and "/", with "%" kept so escapes stay as given
_QUERY_SAFE = _PATH_SAFE + "?"  # RFC 3986 §3.4
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_INTERIM_FIRST, _INTERIM_END = 100, 200  # RFC 9110 §15.2: 1xx answers come before the final one


class InvalidUrl(ValueError):
    """The text is not an absolute http:// or https:// URL with a host."""


class HttpClientError(Exception):
    """A request got no complete answer. The message names the peer (`host:port`) and the cause."""


class HttpConnectError(HttpClientError):
    """No connection could be opened: name resolution, refusal, or a TLS handshake or certificate failure."""


class HttpConnectionLost(HttpClientError):
    """The connection closed or failed before the whole response arrived.

    `response_started` is True when some of the response had been read (then the request is never repeated).
    """

    def __init__(self, msg: str, *, response_started: bool) -> None:
        super().__init__(msg)
        self.response_started = response_started


class HttpProtocolError(HttpClientError):
    """The peer's answer is not HTTP/1.1 (RFC 9112), or its head is longer than MAX_HEAD_BYTES."""


class HttpTimeout(HttpClientError):
    """No whole response within the request's `timeout_s` (Rule 6); its connection was closed."""


@dataclass(frozen=True, slots=True)
class Url:
    """A parsed http(s) URL, with the parts of the request head that depend only on it prepared once.

    `str(url)` is the URL without its credentials; `where` (`host:port`) is safe to log.
    """

    scheme: str
    host: str
    """Lowercase, IDNA (ASCII) for names, no brackets around an IPv6 address."""
    port: int
    target: str
    """The request target (RFC 9112 §3.2.1, origin-form): path and query, percent-encoded."""
    origin: tuple[str, str, int] = field(repr=False, compare=False)
    head: bytes = field(repr=False, compare=False)
    """` <target> HTTP/1.1\\r\\nHost: ...\\r\\n`, and an Authorization line when the URL carries credentials."""

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if _DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.target}"


def parse_url(text: str) -> Url:
    """Parse an absolute http:// or https:// URL (RFC 3986); the fragment is dropped.

    A path or query with characters outside RFC 3986 (spaces, non-ASCII) is percent-encoded as UTF-8; a host name
    in Unicode is turned into its IDNA form; `user:password@` becomes an `Authorization: Basic` header
    (RFC 7617).

    Raises:
        InvalidUrl: not http(s), no host, a bad port or a host that is neither a name nor an IP address.
    """
    try:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        port = parts.port
        hostname = parts.hostname
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidUrl(f"not a URL: {exc}") from None
    if scheme not in _DEFAULT_PORTS:
        raise InvalidUrl(f"not an http(s) URL (scheme {scheme!r})")
    if not hostname:
        raise InvalidUrl("no host in the URL")
    host = _ascii_host(hostname)
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    elif port == 0:
        raise InvalidUrl("port 0")
    target = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_QUERY_SAFE)
    host_header = f"[{host}]" if ":" in host else host
    if port != _DEFAULT_PORTS[scheme]:
        host_header += f":{port}"
    head = f" {target} HTTP/1.1\r\nHost: {host_header}\r\n"
    if parts.username is not None:
        user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        head += f"Authorization: Basic {base64.b64encode(user_pass).decode('ascii')}\r\n"
    return Url(scheme, host, port, target, (scheme, host, port), head.encode("ascii"))


def _ascii_host(hostname: str) -> str:
    if ":" in hostname:  # urlsplit strips the brackets of an IPv6 literal (RFC 3986 §3.2.2)
        try:
            return str(ipaddress.IPv6Address(hostname.partition("%")[0]))
        except ValueError:
            raise InvalidUrl(f"bad IPv6 address {hostname!r}") from None
    if not hostname.isascii():
        try:
            hostname = hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidUrl(f"bad host name {hostname!r}") from None
    if not _HOST_CHARS.issuperset(hostname) or hostname.startswith("."):
        raise InvalidUrl(f"bad host name {hostname!r}")
    return hostname


@dataclass(frozen=True, slots=True)
class Response:
    """A final (non-1xx) response. The body was read to its end; `body` holds at most its first keep_body_bytes."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    """As received (names in the peer's case), trailers of a chunked body included."""
    body: bytes
    body_size_bytes: int
    """The whole body's size after transfer decoding."""

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case), decoded as Latin-1; None when absent."""
        key = name.lower().encode("ascii")
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None


@dataclass(frozen=True, slots=True)
class HttpClientStatistics:
    """Counters of one HttpClient: connections now, and totals since it was created."""

    connections: int
    """Open connections, idle ones included."""
    idle: int
    in_use: int
    """Requests holding a connection (or opening one)."""
    waiting: int
    """Requests waiting for a connection slot (Rule 4)."""
    requests: int
    connects: int
    """Connections opened."""
    retries: int
    """Requests sent again after a pooled connection turned out closed (Rule 3)."""


class _Connection:
    """One connection and its response parser; it is also the parser's callback object."""

    __slots__ = ("body", "body_size", "complete", "extra", "headers", "headers_done", "idle_since", "keep_alive",
                 "keep_body", "parser", "started", "stream", "where")

    def __init__(self, stream: anyio.abc.ByteStream, where: str, keep_body: int) -> None:
        self.stream = stream
        self.where = where
        self.keep_body = keep_body
        self.parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_size = 0
        self.complete = False
        self.headers_done = False
        self.keep_alive = False
        self.started = False
        self.extra = False

    # ---- httptools callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the response: the connection cannot carry another request
            self.extra = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        size = self.body_size
        if size < self.keep_body:
            self.body.append(body[:self.keep_body - size])
        self.body_size = size + len(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if _INTERIM_FIRST <= status < _INTERIM_END:  # 100 Continue and the like: the final answer follows
            self.headers = []
            self.headers_done = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # ---- one exchange ------------------------------------------------------------------------------------

    async def exchange(self, data: bytes, deadline: float | None = None) -> Response:
        """`_exchange` by `deadline` (`anyio.current_time()`), if any (Rule 6).

        Raises:
            TimeoutError: the deadline passed first; the connection's state is unknown.
        """
        if deadline is None:
            return await self._exchange(data)
        stream = self.stream
        if type(stream) is LoopStream:
            stream.deadline = deadline
            try:
                return await self._exchange(data)
            finally:
                stream.deadline = None
        with _fail_at(deadline):
            return await self._exchange(data)

    async def _exchange(self, data: bytes) -> Response:
        """Write `data` (a whole request) and read the response to its end.

        Raises:
            HttpConnectionLost: the connection failed or closed first (`response_started` says whether any of
                the response had arrived).
            HttpProtocolError: the answer is not HTTP/1.1.
        """
        self.headers = []
        self.body = []
        self.body_size = 0
        self.complete = self.headers_done = self.started = self.extra = False
        stream = self.stream
        parser = self.parser
        head_bytes = 0
        try:
            await stream.send(data)
            while not self.complete:
                chunk = await stream.receive(65536)
                self.started = True
                if not self.headers_done:
                    head_bytes += len(chunk)
                try:
                    parser.feed_data(chunk)
                except httptools.HttpParserError as exc:
                    if not self.complete:
                        raise HttpProtocolError(f"{self.where}: unreadable HTTP response: {exc}") from None
                    self.keep_alive = False  # a complete answer followed by garbage: keep the answer
                if not self.headers_done and head_bytes > MAX_HEAD_BYTES:
                    raise HttpProtocolError(f"{self.where}: response head longer than {MAX_HEAD_BYTES} bytes")
        except anyio.EndOfStream:
            if not (self.headers_done and self._delimited_by_close()):
                raise HttpConnectionLost(f"{self.where}: connection closed before the whole response",
                                         response_started=self.started) from None
            self.complete = True  # RFC 9112 §6.3 rule 8: the body ends with the connection
            self.keep_alive = False
        except DeadlineExceeded:
            raise
        except (anyio.BrokenResourceError, OSError) as exc:
            cause = exc.__cause__ if isinstance(exc, anyio.BrokenResourceError) and exc.__cause__ else exc
            raise HttpConnectionLost(f"{self.where}: connection failed: {_describe(cause)}",
                                     response_started=self.started) from exc
        if self.extra:
            self.keep_alive = False
        return Response(parser.get_status_code(), self.headers, b"".join(self.body), self.body_size)

    def _delimited_by_close(self) -> bool:
        """True when the response framed its body by neither Content-Length nor chunked coding (RFC 9112 §6.3)."""
        for name, _ in self.headers:
            if name.lower() in (b"content-length", b"transfer-encoding"):
                return False
        return True


def _fail_at(deadline: float) -> AbstractContextManager[anyio.CancelScope]:
    """A scope that raises TimeoutError once `anyio.current_time()` reaches `deadline` (Rule 6)."""
    return anyio.fail_after(max(0.0, deadline - anyio.current_time()))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Pool:
    """The connections to one origin and the requests waiting for one (Rules 4 and 5)."""

    __slots__ = ("idle", "in_use", "open", "waiters")

    def __init__(self) -> None:
        self.idle: list[_Connection] = []  # a stack: the most recently used connection is reused first
        self.in_use = 0
        self.open = 0
        self.waiters: deque[anyio.Event] = deque()


class HttpClient:
    """Sends HTTP/1.1 requests over pooled keep-alive connections (the module docstring gives the rules).

    Use it as an async context manager, or call `aclose()` when done.

    Args:
        max_connections_per_origin: connections per (scheme, host, port) at most, idle ones included (Rule 4).
        idle_timeout_s: a connection idle this long is closed instead of reused (Rule 5). Servers close idle
            connections too (uvicorn after 5 s, nginx after 75 s); Rule 3 covers the ones that did.
        keep_body_bytes: how much of each response body `Response.body` keeps.
        user_agent: the User-Agent header sent with every request.
        ssl_context: for https; None is `ssl.create_default_context()` (the system's CAs, certificates and host
            names verified), made at the first https connection.
        connect: opens the byte stream for a connection instead of TCP and TLS (tests).
        mono: a monotonic clock (seconds) for idle times.
    """

    def __init__(self, *, max_connections_per_origin: int = 8, idle_timeout_s: float = 30.0,
                 keep_body_bytes: int = 1024, user_agent: str = "smppgw/1",
                 ssl_context: ssl.SSLContext | None = None, connect: Connect | None = None,
                 mono: Callable[[], float] = time.monotonic) -> None:
        if max_connections_per_origin < 1:
            raise ValueError("max_connections_per_origin must be at least 1")
        self.max_connections_per_origin = max_connections_per_origin
        self.idle_timeout_s = idle_timeout_s
        self.keep_body_bytes = keep_body_bytes
        self.ssl_context = ssl_context
        self.mono = mono
        self._connect = connect
        self._fixed = f"User-Agent: {user_agent}\r\n".encode("latin-1")
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._closed = False
        self._requests = 0
        self._connects = 0
        self._retries = 0

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def post(self, url: Url | str, body: bytes, headers: Mapping[str, str] | None = None, *,
                   timeout_s: float | None = None) -> Response:
        """POST `body`; see `request`."""
        return await self.request("POST", url, body, headers, timeout_s=timeout_s)

    async def request(self, method: str, url: Url | str, body: bytes = b"",
                      headers: Mapping[str, str] | None = None, *, timeout_s: float | None = None) -> Response:
        """Send one request and return its final response, whatever its status (3xx and errors included).

        Args:
            method: any method but HEAD (whose response has no body to frame by its headers).
            url: a `Url` from `parse_url` (parse once, send many), or the text of one.
            body: sent with a Content-Length (also for an empty body, except with GET).
            headers: extra headers; not Host, Content-Length or User-Agent, which the client writes.
            timeout_s: the most the whole request may take (Rule 6); None: no limit of the client's own.

        Raises:
            HttpTimeout: no whole response within `timeout_s`.
            HttpConnectError: no connection could be opened.
            HttpConnectionLost: the connection failed before the whole response (after Rule 3's one retry).
            HttpProtocolError: the answer is not HTTP/1.1.
            HttpClientError: the client is closed.
            InvalidUrl: `url` is text that is not an http(s) URL.
            ValueError: a header name or value holds CR or LF, or the method is HEAD.
        """
        if not isinstance(url, Url):
            url = parse_url(url)
        if timeout_s is None:
            return await self._request(method, url, body, headers, None)
        try:
            return await self._request(method, url, body, headers, anyio.current_time() + timeout_s)
        except TimeoutError:
            raise HttpTimeout(f"{url.where}: no answer within {timeout_s:g} s") from None

    async def _request(self, method: str, url: Url, body: bytes, headers: Mapping[str, str] | None,
                       deadline: float | None) -> Response:
        if method == "HEAD":
            raise ValueError("HEAD is not supported")
        extra = b""
        if headers:
            lines = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
            if lines.count("\n") != len(headers) or lines.count("\r") != len(headers):
                raise ValueError("a header name or value holds CR or LF")
            extra = lines.encode("latin-1")
        length = b"" if not body and method == "GET" else b"Content-Length: %d\r\n" % len(body)
        data = b"".join((method.encode("ascii"), url.head, self._fixed, extra, length, b"\r\n", body))
        if self._closed:
            raise HttpClientError("the client is closed")
        pool = self._pools.get(url.origin)
        if pool is None:
            pool = self._pools[url.origin] = _Pool()
        if pool.in_use < self.max_connections_per_origin and not pool.waiters:
            pool.in_use += 1
        else:
            await self._wait_for_slot(pool, deadline)
        self._requests += 1
        conn: _Connection | None = None
        try:
            conn = await self._take_idle(pool)
            if conn is not None:
                try:
                    resp = await conn.exchange(data, deadline)
                except HttpConnectionLost as exc:
                    if exc.response_started:
                        raise
                    stale, conn = conn, None
                    await self._close(pool, stale)
                    self._retries += 1
                else:
                    done, conn = conn, None
                    await self._release(pool, done)
                    return resp
            conn = await self._open(url, pool, deadline)
            resp = await conn.exchange(data, deadline)
            done, conn = conn, None
            await self._release(pool, done)
            return resp
        finally:
            # The books first: under cancellation, every await below raises again.
            waiters = pool.waiters
            if waiters:
                waiters.popleft().set()  # the slot passes to the first waiter
            else:
                pool.in_use -= 1
            if conn is not None:  # failed or cancelled midway: the connection's state is unknown
                await self._close(pool, conn)

    async def _wait_for_slot(self, pool: _Pool, deadline: float | None) -> None:
        event = anyio.Event()
        pool.waiters.append(event)
        try:
            if deadline is None:
                await event.wait()
            else:
                with _fail_at(deadline):
                    await event.wait()
        except BaseException:
            if event.is_set():  # handed a slot, then cancelled: pass it on
                if pool.waiters:
                    pool.waiters.popleft().set()
                else:
                    pool.in_use -= 1
            else:
                pool.waiters.remove(event)
            raise

    async def _take_idle(self, pool: _Pool) -> _Connection | None:
        idle = pool.idle
        if not idle:
            return None
        conn = idle.pop()
        if self.mono() - conn.idle_since < self.idle_timeout_s:
            return conn
        idle.append(conn)  # the most recent one expired, so all did (Rule 5)
        await self._close_idle(pool, always=True)
        return None

    async def _release(self, pool: _Pool, conn: _Connection) -> None:
        """Put `conn` back in the pool after a complete response, or close it (Rule 1)."""
        if conn.keep_alive and not self._closed:
            conn.idle_since = self.mono()
            pool.idle.append(conn)
        else:
            await self._close(pool, conn)

    async def _open(self, url: Url, pool: _Pool, deadline: float | None) -> _Connection:
        if deadline is None:
            return await self._open_now(url, pool)
        with _fail_at(deadline):  # outside `_open_now`'s OSError catch
            return await self._open_now(url, pool)

    async def _open_now(self, url: Url, pool: _Pool) -> _Connection:
        try:
            if self._connect is not None:
                stream = await self._connect(url.scheme, url.host, url.port)
            else:
                stream = await self._open_tcp(url)
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            cause = exc.__cause__ if isinstance(exc, anyio.BrokenResourceError) and exc.__cause__ else exc
            raise HttpConnectError(f"{url.where}: cannot connect: {_describe(cause)}") from exc
        self._connects += 1
        pool.open += 1
        return _Connection(stream, url.where, self.keep_body_bytes)

    async def _open_tcp(self, url: Url) -> anyio.abc.ByteStream:
        if url.scheme != "https":
            # Rule 2: a request is one write, so Nagle's algorithm has nothing to gain and would hold a request
            # behind the peer's delayed ACK of the previous one (connect_tcp sets TCP_NODELAY).
            return await connect_tcp(url.host, url.port)
        tcp = await anyio.connect_tcp(url.host, url.port)
        try:
            tcp.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is None:
                self.ssl_context = ssl.create_default_context()
            # standard_compatible=False: a peer that closes without close_notify (most HTTP servers) is an end of
            # stream, not an error; HTTP frames its bodies itself (RFC 9112 §6.3).
            return await TLSStream.wrap(tcp, hostname=url.host, ssl_context=self.ssl_context,
                                        standard_compatible=False)
        except BaseException:
            await anyio.aclose_forcefully(tcp)
            raise

    async def _close(self, pool: _Pool, conn: _Connection) -> None:
        pool.open -= 1
        with anyio.CancelScope(shield=True):  # closing a socket is immediate; a cancellation waits for it
            await anyio.aclose_forcefully(conn.stream)

    async def _close_idle(self, pool: _Pool, *, always: bool) -> int:
        idle = pool.idle
        if always:
            expired, pool.idle = idle, []
        else:
            deadline = self.mono() - self.idle_timeout_s
            n = 0
            while n < len(idle) and idle[n].idle_since <= deadline:
                n += 1
            expired, pool.idle = idle[:n], idle[n:]
        for conn in expired:
            await self._close(pool, conn)
        return len(expired)

    async def close_expired(self) -> int:
        """Close the idle connections that reached idle_timeout_s (a long-lived client calls it now and then,
        so that connections to origins it no longer uses do not linger); the number closed."""
        closed = 0
        for key, pool in list(self._pools.items()):
            closed += await self._close_idle(pool, always=False)
            if pool.open == 0 and pool.in_use == 0 and not pool.waiters:
                del self._pools[key]
        return closed

    async def aclose(self) -> None:
        """Close every idle connection; requests in flight finish and then close theirs; new ones are refused."""
        self._closed = True
        for pool in list(self._pools.values()):
            await self._close_idle(pool, always=True)

    def statistics(self) -> HttpClientStatistics:
        pools = self._pools.values()
        return HttpClientStatistics(
            connections=sum(p.open for p in pools), idle=sum(len(p.idle) for p in pools),
            in_use=sum(p.in_use for p in pools), waiting=sum(len(p.waiters) for p in pools),
            requests=self._requests, connects=self._connects, retries=self._retries)

