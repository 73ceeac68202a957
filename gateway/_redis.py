"""The Redis store: the interface of SqliteStore on a Redis that several gateway nodes share.

Rule 1: accepted means persisted: `write()` returns only after Redis acknowledged the commit that holds the writes
(and, with `wait_replicas`, after that many replicas did). What an acknowledgement is worth depends on the server's
persistence settings: docs/deploy.md, "Redis persistence and what it guarantees".
Rule 2: group commit: one commit in flight per store; it is one call of the Lua function `<lib>_commit`, so all it
holds is applied atomically (a function runs alone on the server, like MULTI/EXEC, but can also read, which the
compare-and-set and the parked receipts need). Writes made while a commit runs go into the next one.
Rule 3: a commit is applied once: it carries the store's next sequence number, and the function keeps the last
number it applied, with its results, in the store's marker key. A commit resent after its reply was lost returns
the recorded results and changes nothing. Transient errors (connection lost, LOADING, READONLY or MASTERDOWN in a
failover, OOM) are retried until Redis answers; `is_open` is False meanwhile, and nothing is lost or doubled.
Rule 4: every write of a message record adds one to its version. A write that names the version it was based on
(`RedisWrites.expect`) is refused when another node wrote the record since (compare-and-set); the stream entries and
delayed retries given with that message are skipped with it, and the result holds the record that won.
Rule 5: a receipt that finds no message is parked by one function that looks its keys up and parks it under them
atomically (`match_or_park`, or `match_or_park_many` for a batch in one round trip, which also returns each hit's
record and version); a commit that registers an SMSC message id returns every receipt parked under its keys,
whichever node parked it. Both run on the server one at a time, so a receipt is never missed between the two.

Key layout. P is `{prefix}:{{{group}}}:`, for example `smppgw:{eu1}:`; the braces are a Redis Cluster hash tag, so
every key of a deployment lands in one slot. Free-form parts of key names are escaped (':' as %3A, '%' as %25).

    P m:{message_id}       str    "{version}\x1f{node}\x1f{final 0/1}{callback pending 0/1}\x1f" then the record
                                  (MessagePack): version and writer for the compare-and-set, the flags for the
                                  sets below. Expires `final_ttl_s` after becoming final (None: kept)
    P open, P cb           set    ids of the non-final messages; ids whose callback is pending
    P n                    str    messages written (count of records ever created)
    P c:{smsc}:{key}       str    "{message_id} {part}": receipt correlation, TTL `receipt_wait_s`
    P i:{account}:{key}    str    idempotency record, MessagePack [body_hash, [slots], at], TTL `idempotency_ttl_s`
    P er, P er:t, P er:seq hash id -> MessagePack [smsc, at, pdu] (early receipts); zset id -> at (entries older than
                                  `early_receipt_ttl_s` are trimmed by the next park); the id counter
    P p:{smsc}:{key}       list   ids of receipts parked under a lookup key, TTL `early_receipt_ttl_s`
    P mo:{id}              str    MessagePack [at, record], TTL `mo_ttl_s` (None: kept)
    P d:{kind}:{id}        hash   a record of the billing flows: i m s st d a b (id, msisdn, scope, state, due, at,
                                  body) and the escaped index values me se ste
    P dx:{kind}:at         zset   id -> at; also dx:{kind}:m:{msisdn}, :s:{scope}, :st:{state} (values other than "")
    P dx:{kind}:due        zset   id -> due (records with a due time)
    P l:{attempt_id}       hash   a ledger entry (i a m sv op am cu pp sm mi) and its latest outcome (os orr osm oa)
    P lo:{attempt_id}      list   every outcome in the order recorded, MessagePack [at, state, reason, smsc_message_id]
    P lx:at                zset   attempt id -> entry at; also lx:m:{msisdn}, lx:sv:{service}, lx:op:{operator},
                                  lx:st:{state} ("pending" until an outcome)
    P q:{stream}           stream one entry per message to send (field m: the message id), consumer group
                                  `consumer_group`; an entry is deleted when it is acknowledged
    P qd:{stream}          zset   message id -> due: delayed retries, moved to the stream by `move_due`
    P commit:{node}:{boot} str    "{seq}|{versions}|{early ids}|{parked}": the last commit of one store (Rule 3), 1 h
    P nodes                zset   node -> until when its heartbeat says it is alive (ms, Redis's clock)
    P rl:{account}         hash   the shared token bucket (gateway._ratelimit_redis)

Reads. Every read has an async twin (`aget`, `afind_idempotency`, `alookup_smsc_id`, `adocs`, ...): `aget` and
`alookup_smsc_id` cost one round trip, the queries one per page of up to 1000 records; `claim_records` claims stream
entries and reads their records in the same round trip. The Store protocol's plain
methods (`get`, `find_idempotency`, ...) run the same read over a second, blocking connection: each holds up the
event loop for one round trip (about 0.1 ms on loopback, a millisecond or more across a network). That is fine at
startup and on cold paths (the admin API, the billing flows' lookups); the hot paths call the twins.

Requires Redis 7.0 or later (functions, ZRANGE BYSCORE/REV, XAUTOCLAIM). Not for Redis Cluster with several slots:
one primary holds a deployment (Sentinel or a managed primary with replicas for failover). With a redis+sentinel://
URL (`parse_sentinel_url`) every connection asks the Sentinels for the primary when it connects, so after a failover
the store reconnects to the new one; until then its commits are retried (Rule 3).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Collection, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import anyio
import anyio.abc
import msgspec
import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.exceptions
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._model import ENCODER, Message, decode_record
from ._store import Doc, EarlyReceipt, IdempotencyRecord, StoreClosed, StoreStatistics, Writes

__all__ = [
    "CommitResult",
    "Conflict",
    "ParkedReceipt",
    "PendingCommit",
    "QueueEntry",
    "QueueStatistics",
    "ReceiptHit",
    "RedisStore",
    "RedisUnavailable",
    "RedisWrites",
    "SentinelUrl",
    "key_prefix",
    "parse_sentinel_url",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
Cmd = tuple[Any, ...]
# A read written once for both clients: it yields the commands of one round trip (sent as one pipeline) and is
# sent their replies back; the sync and async drivers differ only in how they send.
Plan = Generator[list[Cmd], list[Any], T]

_ESCAPE = str.maketrans({"%": "%25", ":": "%3A"})
_GROUP_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_PAGE = 1000
_MARKER_TTL_S = 3600
# Errors that mean "not applied, ask again later": the connection is gone, Redis is loading its data, is a replica
# now (failover), has no primary, is out of memory, is busy with a script, or refuses writes without replicas.
_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError, redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError,
    redis.exceptions.MasterDownError,
)
_TRANSIENT_REPLIES = ("BUSY", "NOREPLICAS", "MASTERDOWN", "LOADING", "READONLY", "OOM")

_PACK = msgspec.msgpack.Encoder()
_EARLY = msgspec.msgpack.Decoder(tuple[str, float, bytes])
_IDEMPOTENCY = msgspec.msgpack.Decoder(tuple[str, list[str], float])
_MO = msgspec.msgpack.Decoder(tuple[float, bytes])


async def _acall(client: redis.asyncio.Redis, *args: Any) -> Any:
    """One command (redis-py leaves execute_command untyped)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def _call(client: redis.Redis, *args: Any) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _e(part: str) -> str:
    """A free-form part of a key name, escaped so that ':' always separates parts."""
    if "%" in part or ":" in part:  # two scans in C: most parts (message ids, stream names) have neither
        return part.translate(_ESCAPE)
    return part


def _f(x: float) -> str:
    """A float as Redis reads it back exactly (repr is the shortest string that round-trips)."""
    return repr(float(x))


def _ttl(seconds: float | None) -> int:
    """Whole seconds for EX/EXPIRE (at least 1); 0 for "no expiry"."""
    return 0 if seconds is None else max(1, round(seconds))


def key_prefix(prefix: str, group: str) -> str:
    """The prefix of every key of a deployment: `{prefix}:{{{group}}}:` (the braces are a Cluster hash tag).

    Raises:
        ValueError: the group is empty or holds a character other than letters, digits, '_', '.', '-'.
    """
    if not group or not set(group) <= _GROUP_CHARS:
        raise ValueError(f"a Redis group name is letters, digits, '_', '.' and '-', got {group!r}")
    return f"{prefix}:{{{group}}}:"


# ---- Sentinel URLs -----------------------------------------------------------------------------------------

SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
_SENTINEL_PORT = 26379
_SENTINEL_QUERY = ("sentinel_password",)
_SENTINEL_TLS_QUERY = ("ssl_ca_certs", "ssl_check_hostname")


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """A `redis+sentinel://` or `rediss+sentinel://` URL, parsed (`parse_sentinel_url`).

    Attributes:
        sentinels: (host, port) of each Sentinel, in the URL's order.
        service_name: the name the Sentinels monitor the primary under (`sentinel monitor NAME ...`).
        db: the database number on the primary.
        username, password: the primary's credentials (ACL user and password, or `requirepass`).
        sentinel_password: the Sentinels' own password (their `requirepass`).
        ssl: TLS to the Sentinels and to the primary (`rediss+sentinel://`).
        ssl_ca_certs: the CA file that signed the servers' certificates (None: the system's).
        ssl_check_hostname: check the certificate's name against the address connected to (the primary's is
            the address the Sentinels report, usually an IP).
    """

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_check_hostname: bool = False


def _sentinel_address(text: str) -> tuple[str, int]:
    """One `host[:port]` or `[ipv6][:port]` of the Sentinel list."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            raise ValueError(f"bad Sentinel address {text!r}: expected [IPv6]:port")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_or_empty = text.partition(":")
        port_text = port_text_or_empty if colon else None
        if not host:
            raise ValueError(f"bad Sentinel address {text!r}: the host is empty")
    if port_text is None:
        return host, _SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad Sentinel address {text!r}: the port must be 1 to 65535")
    return host, int(port_text)


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service_name[/db][?query]`.

    The user and password are the primary's; a Sentinel's port defaults to 26379. The query may hold
    `sentinel_password` (the Sentinels' own password) and, with `rediss+sentinel://` (TLS to the Sentinels and
    the primary), `ssl_ca_certs` (a file) and `ssl_check_hostname` (true or false, default false). User, password
    and service name are percent-decoded.

    Raises:
        ValueError: the URL is not of this form; the message names the part that is wrong.
    """
    scheme = next((s for s in SENTINEL_SCHEMES if url.startswith(s)), None)
    if scheme is None:
        raise ValueError(f"expected a redis+sentinel:// or rediss+sentinel:// URL, got scheme {url.partition(':')[0]!r}")
    rest, _, fragment = url[len(scheme):].partition("#")
    if fragment:
        raise ValueError("a Sentinel URL has no #fragment")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        hosts = netloc
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        if not colon:
            raise ValueError("the credentials of a Sentinel URL are user:password@ or :password@ (no password given)")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(secret) or None
    if not hosts:
        raise ValueError("a Sentinel URL needs at least one Sentinel host:port")
    sentinels = tuple(_sentinel_address(h) for h in hosts.split(","))
    parts = path.split("/") if slash else []
    if not parts or not parts[0]:
        raise ValueError("a Sentinel URL needs the service name as its path: .../service_name[/db]")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError(f"the path of a Sentinel URL is /service_name[/db] with a number as db, got {'/' + path!r}")
    db = int(parts[1]) if len(parts) == 2 else 0
    ssl = scheme.startswith("rediss")
    allowed = _SENTINEL_QUERY + (_SENTINEL_TLS_QUERY if ssl else ())
    options: dict[str, str] = {}
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        # The query is not shown: it may hold a password.
        raise ValueError("the query of a Sentinel URL is not name=value&...") from None
    for name, value in pairs:
        if name not in allowed:
            raise ValueError(f"unknown query parameter {name!r} in a {scheme} URL (known: {', '.join(allowed)})")
        if name in options:
            raise ValueError(f"query parameter {name!r} given twice")
        options[name] = value
    check = options.get("ssl_check_hostname", "false").lower()
    if check not in ("true", "false"):
        raise ValueError(f"ssl_check_hostname is true or false, got {check!r}")
    return SentinelUrl(sentinels, urllib.parse.unquote(parts[0]), db, username, password,
                       options.get("sentinel_password"), ssl, options.get("ssl_ca_certs"), check == "true")


# ---- the Lua library ---------------------------------------------------------------------------------------
# Every function takes the key prefix as KEYS[1] and builds its key names from it (all in the prefix's slot).
# Floats travel as the strings Python wrote (repr), never through Lua's tostring, which keeps 14 digits only.

_LUA = r"""
local function trim_early(p, cutoff)
  local old = redis.call('ZRANGE', p .. 'er:t', '-inf', cutoff, 'BYSCORE', 'LIMIT', 0, 100)
  for _, id in ipairs(old) do
    redis.call('HDEL', p .. 'er', id)
    redis.call('ZREM', p .. 'er:t', id)
  end
end

local function add_early(p, at, ttl, rec, smsc, nkeys, a, b)
  local id = redis.call('INCR', p .. 'er:seq')
  redis.call('HSET', p .. 'er', id, rec)
  redis.call('ZADD', p .. 'er:t', at, id)
  for j = 0, nkeys - 1 do
    local lk = p .. 'p:' .. smsc .. ':' .. a[b + j]
    redis.call('RPUSH', lk, id)
    redis.call('EXPIRE', lk, ttl)
  end
  return id
end

-- The sections of a commit arrive as one MessagePack array (strings and integers: floats as strings); binary
-- values (records, bodies, PDUs) are separate arguments, which the array refers to by number: blob(ctx, i).
local function blob(ctx, i)
  return ctx.a[ctx.base + i]
end

-- A message is one string: "{version}\31{node}\31{final}{callback}\31" then the record (a hash would need the
-- hashtable encoding for a record this long, twice the memory, and more work per write).
local function read_message(k)
  local raw = redis.call('GET', k)
  if not raw then return 0, nil, '1', '0' end
  local v, w, f, c = string.match(raw, '^(%d+)\31([^\31]*)\31(%d)(%d)\31')
  return tonumber(v), w, f, c
end

-- M: id, escaped id, expected version (-1: none), final, callback pending, record blob, #streams, #delays,
-- streams..., (stream, due)...
local function s_messages(p, s, b, n, ctx)
  local node, fttl = ctx.node, tonumber(ctx.final_ttl)
  local open, cbset = p .. 'open', p .. 'cb'
  for _ = 1, n do
    local id, k, expect = s[b], p .. 'm:' .. s[b + 1], s[b + 2]
    local final, cb = s[b + 3], s[b + 4]
    local nenq, ndel = s[b + 6], s[b + 7]
    local rec = blob(ctx, s[b + 5])
    b = b + 8
    local v, w, oldf, oldc = read_message(k)
    if expect >= 0 and v ~= expect and not (w == node and v > expect) then
      ctx.versions[#ctx.versions + 1] = -v - 1
      b = b + nenq + 2 * ndel
    else
      if v == 0 then redis.call('INCR', p .. 'n') end
      v = v + 1
      local value = string.format('%d', v) .. '\31' .. node .. '\31' .. final .. cb .. '\31' .. rec
      if final == '1' and fttl > 0 then
        redis.call('SET', k, value, 'EX', fttl)
      else
        redis.call('SET', k, value)  -- a plain SET also drops a TTL
      end
      if oldf ~= final then
        if final == '1' then redis.call('SREM', open, id) else redis.call('SADD', open, id) end
      end
      if oldc ~= cb then
        if cb == '1' then redis.call('SADD', cbset, id) else redis.call('SREM', cbset, id) end
      end
      for _ = 1, nenq do
        redis.call('XADD', p .. 'q:' .. s[b], '*', 'm', id)
        b = b + 1
      end
      for _ = 1, ndel do
        redis.call('ZADD', p .. 'qd:' .. s[b], s[b + 1], id)
        b = b + 2
      end
      ctx.versions[#ctx.versions + 1] = v
    end
  end
  return b
end

-- C: escaped smsc, escaped key, "message_id part"
local function s_correlation(p, s, b, n, ctx)
  for _ = 1, n do
    local sk = s[b] .. ':' .. s[b + 1]
    redis.call('SET', p .. 'c:' .. sk, s[b + 2], 'EX', ctx.corr_ttl)
    local ids = redis.call('LRANGE', p .. 'p:' .. sk, 0, -1)
    for _, id in ipairs(ids) do
      if redis.call('HEXISTS', p .. 'er', id) == 1 then
        ctx.parked[#ctx.parked + 1] = ctx.cpos .. ':' .. id
      end
    end
    ctx.cpos = ctx.cpos + 1
    b = b + 3
  end
  return b
end

-- I: account, escaped key, record blob
local function s_idempotency(p, s, b, n, ctx)
  for _ = 1, n do
    redis.call('SET', p .. 'i:' .. s[b] .. ':' .. s[b + 1], blob(ctx, s[b + 2]), 'NX', 'EX', ctx.idem_ttl)
    b = b + 3
  end
  return b
end

-- E: record blob, escaped smsc
local function s_early(p, s, b, n, ctx)
  trim_early(p, ctx.cutoff)
  for _ = 1, n do
    ctx.early[#ctx.early + 1] = add_early(p, ctx.at, ctx.early_ttl, blob(ctx, s[b]), s[b + 1], 0, s, b)
    b = b + 2
  end
  return b
end

-- X: early receipt ids
local function s_early_done(p, s, b, n, ctx)
  for _ = 1, n do
    redis.call('HDEL', p .. 'er', s[b])
    redis.call('ZREM', p .. 'er:t', s[b])
    b = b + 1
  end
  return b
end

-- O: escaped id, record blob
local function s_mo(p, s, b, n, ctx)
  local ttl = tonumber(ctx.mo_ttl)
  for _ = 1, n do
    if ttl > 0 then
      redis.call('SET', p .. 'mo:' .. s[b], blob(ctx, s[b + 1]), 'EX', ttl)
    else
      redis.call('SET', p .. 'mo:' .. s[b], blob(ctx, s[b + 1]))
    end
    b = b + 2
  end
  return b
end

-- D: escaped kind, escaped id, id, msisdn, scope, state, due ('' for none), at, body blob, escaped msisdn,
-- scope, state
local function s_docs(p, s, b, n, ctx)
  for _ = 1, n do
    local x = p .. 'dx:' .. s[b] .. ':'
    local ide = s[b + 1]
    local k = p .. 'd:' .. s[b] .. ':' .. ide
    local m, sc, st, due, at = s[b + 3], s[b + 4], s[b + 5], s[b + 6], s[b + 7]
    local me, se, ste = s[b + 9], s[b + 10], s[b + 11]
    local old = redis.call('HMGET', k, 'me', 'se', 'ste')
    if old[1] then
      redis.call('ZREM', x .. 'm:' .. old[1], ide)
      redis.call('ZREM', x .. 's:' .. old[2], ide)
      redis.call('ZREM', x .. 'st:' .. old[3], ide)
    end
    redis.call('HSET', k, 'i', s[b + 2], 'm', m, 's', sc, 'st', st, 'd', due, 'a', at, 'b', blob(ctx, s[b + 8]),
               'me', me, 'se', se, 'ste', ste)
    redis.call('ZADD', x .. 'at', at, ide)
    if m ~= '' then redis.call('ZADD', x .. 'm:' .. me, at, ide) end
    if sc ~= '' then redis.call('ZADD', x .. 's:' .. se, at, ide) end
    if st ~= '' then redis.call('ZADD', x .. 'st:' .. ste, at, ide) end
    if due ~= '' then redis.call('ZADD', x .. 'due', due, ide) else redis.call('ZREM', x .. 'due', ide) end
    b = b + 12
  end
  return b
end

-- L: escaped id, id, at, msisdn, service, operator, amount, currency, price point, smsc, message id,
-- escaped msisdn, service, operator
local function s_ledger(p, s, b, n, ctx)
  for _ = 1, n do
    local ide = s[b]
    local k = p .. 'l:' .. ide
    if redis.call('HEXISTS', k, 'a') == 0 then
      local at = s[b + 2]
      redis.call('HSET', k, 'i', s[b + 1], 'a', at, 'm', s[b + 3], 'sv', s[b + 4], 'op', s[b + 5], 'am', s[b + 6],
                 'cu', s[b + 7], 'pp', s[b + 8], 'sm', s[b + 9], 'mi', s[b + 10])
      local st = redis.call('HGET', k, 'ose') or 'pending'
      redis.call('ZADD', p .. 'lx:at', at, ide)
      redis.call('ZADD', p .. 'lx:m:' .. s[b + 11], at, ide)
      redis.call('ZADD', p .. 'lx:sv:' .. s[b + 12], at, ide)
      redis.call('ZADD', p .. 'lx:op:' .. s[b + 13], at, ide)
      redis.call('ZADD', p .. 'lx:st:' .. st, at, ide)
    end
    b = b + 14
  end
  return b
end

-- R: escaped attempt id, at, state, reason, smsc message id, escaped state, log record blob
local function s_outcomes(p, s, b, n, ctx)
  for _ = 1, n do
    local ide, at, ste = s[b], s[b + 1], s[b + 5]
    local k = p .. 'l:' .. ide
    redis.call('RPUSH', p .. 'lo:' .. ide, blob(ctx, s[b + 6]))
    local cur = redis.call('HMGET', k, 'oa', 'ose', 'a')
    if not cur[1] or tonumber(at) >= tonumber(cur[1]) then
      redis.call('HSET', k, 'oa', at, 'os', s[b + 2], 'orr', s[b + 3], 'osm', s[b + 4], 'ose', ste)
      local old = cur[2] or 'pending'
      if cur[3] and old ~= ste then
        redis.call('ZREM', p .. 'lx:st:' .. old, ide)
        redis.call('ZADD', p .. 'lx:st:' .. ste, cur[3], ide)
      end
    end
    b = b + 7
  end
  return b
end

-- Q: escaped stream, message id
local function s_enqueue(p, s, b, n, ctx)
  for _ = 1, n do
    redis.call('XADD', p .. 'q:' .. s[b], '*', 'm', s[b + 1])
    b = b + 2
  end
  return b
end

-- Z: escaped stream, message id, due
local function s_delay(p, s, b, n, ctx)
  for _ = 1, n do
    redis.call('ZADD', p .. 'qd:' .. s[b], s[b + 2], s[b + 1])
    b = b + 3
  end
  return b
end

-- A: escaped stream, entry id
local function s_ack(p, s, b, n, ctx)
  for _ = 1, n do
    local q = p .. 'q:' .. s[b]
    redis.call('XACK', q, ctx.group, s[b + 1])
    redis.call('XDEL', q, s[b + 1])
    b = b + 2
  end
  return b
end

local SECTIONS = {M = s_messages, C = s_correlation, I = s_idempotency, E = s_early, X = s_early_done, O = s_mo,
                  D = s_docs, L = s_ledger, R = s_outcomes, Q = s_enqueue, Z = s_delay, A = s_ack}

-- args: node, boot, seq, marker ttl, final ttl, correlation ttl, idempotency ttl, early ttl, early cutoff, now,
-- mo ttl, consumer group, the sections (MessagePack: tag, count, items..., tag, ...), then the blobs
local function commit(keys, a)
  local p = keys[1]
  local mk = p .. 'commit:' .. a[1] .. ':' .. a[2]
  local seq = tonumber(a[3])
  local prev = redis.call('GET', mk)
  if prev then
    local pseq = tonumber(string.match(prev, '^(%d+)|'))
    if pseq and pseq >= seq then
      if pseq == seq then return prev end
      return 'stale'
    end
  end
  local ctx = {node = a[1], final_ttl = a[5], corr_ttl = a[6], idem_ttl = a[7], early_ttl = a[8], cutoff = a[9],
               at = a[10], mo_ttl = a[11], group = a[12], versions = {}, early = {}, parked = {}, cpos = 0,
               a = a, base = 13}
  local s = cmsgpack.unpack(a[13])
  local b = 1
  while b <= #s do
    local tag, n = s[b], s[b + 1]
    b = SECTIONS[tag](p, s, b + 2, n, ctx)
  end
  local out = a[3] .. '|' .. table.concat(ctx.versions, ',') .. '|' .. table.concat(ctx.early, ',') .. '|' ..
              table.concat(ctx.parked, ',')
  redis.call('SET', mk, out, 'EX', a[4])
  return out
end

-- args: escaped smsc, #keys, keys..., record, early cutoff, now, early ttl
local function park(keys, a)
  local p = keys[1]
  local smsc, nk = a[1], tonumber(a[2])
  for j = 3, 2 + nk do
    local v = redis.call('GET', p .. 'c:' .. smsc .. ':' .. a[j])
    if v then return {'hit', v} end
  end
  local b = 3 + nk
  trim_early(p, a[b + 1])
  return {'parked', add_early(p, a[b + 2], a[b + 3], a[b], smsc, nk, a, 3)}
end

-- park for many receipts, each as one step of its own (in order: a receipt sees what the ones before it parked).
-- args: early cutoff, now, early ttl, #receipts, then per receipt: escaped smsc, #keys, keys..., record.
-- Returns two values per receipt: for a hit "{message_id} {part}" and the message's stored value (false when
-- there is none); for a parked receipt its id and false.
local function park_many(keys, a)
  local p = keys[1]
  local out = {}
  local b = 5
  for _ = 1, tonumber(a[4]) do
    local smsc, nk = a[b], tonumber(a[b + 1])
    local hit = false
    for j = b + 2, b + 1 + nk do
      hit = redis.call('GET', p .. 'c:' .. smsc .. ':' .. a[j])
      if hit then break end
    end
    if hit then
      local mid = string.match(hit, '^(.*) %d+$')
      out[#out + 1] = hit
      out[#out + 1] = redis.call('GET', p .. 'm:' .. mid:gsub('%%', '%%25'):gsub(':', '%%3A'))
    else
      trim_early(p, a[1])
      out[#out + 1] = add_early(p, a[2], a[3], a[b + 2 + nk], smsc, nk, a, b + 2)
      out[#out + 1] = false
    end
    b = b + 3 + nk
  end
  return out
end

-- args: escaped stream, consumer group, consumer, count: take up to `count` new entries (XREADGROUP, which a
-- function may not block on) and read their messages in the same step. Returns three values per entry: its id,
-- the message id and the message's stored value (false when there is none).
local function claim(keys, a)
  local p = keys[1]
  local got = redis.call('XREADGROUP', 'GROUP', a[2], a[3], 'COUNT', a[4], 'STREAMS', p .. 'q:' .. a[1], '>')
  local out = {}
  if not got then return out end
  for _, e in ipairs(got[1][2]) do
    local f, mid = e[2], nil
    for j = 1, #f, 2 do
      if f[j] == 'm' then mid = f[j + 1] end
    end
    if mid then
      out[#out + 1] = e[1]
      out[#out + 1] = mid
      out[#out + 1] = redis.call('GET', p .. 'm:' .. mid:gsub('%%', '%%25'):gsub(':', '%%3A'))
    end
  end
  return out
end

-- args: escaped stream, now, limit: due delayed entries move to the stream
local function move_due(keys, a)
  local p = keys[1]
  local dz, q = p .. 'qd:' .. a[1], p .. 'q:' .. a[1]
  local ids = redis.call('ZRANGE', dz, '-inf', a[2], 'BYSCORE', 'LIMIT', 0, a[3])
  for _, id in ipairs(ids) do
    redis.call('XADD', q, '*', 'm', id)
    redis.call('ZREM', dz, id)
  end
  return #ids
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- args: escaped node, ttl ms: the node is alive until now + ttl (Redis's clock); long-dead nodes are forgotten
local function heartbeat(keys, a)
  local p = keys[1]
  local now = now_ms()
  redis.call('ZADD', p .. 'nodes', string.format('%d', now + tonumber(a[2])), a[1])
  redis.call('ZREMRANGEBYSCORE', p .. 'nodes', '-inf', string.format('%d', now - 86400000))
  return 1
end

local function live_nodes(keys, a)
  return redis.call('ZRANGE', keys[1] .. 'nodes', string.format('%d', now_ms()), '+inf', 'BYSCORE')
end

local function start_at(driver, last, start, since, rev)
  if last ~= '' then
    local r
    if rev then r = redis.call('ZREVRANK', driver, last) else r = redis.call('ZRANK', driver, last) end
    if r then return r + 1 end
    return start
  end
  if since ~= '' then
    if rev then return redis.call('ZCOUNT', driver, since, '+inf') end
    return redis.call('ZCOUNT', driver, '-inf', '(' .. since)
  end
  return start
end

-- args: escaped kind, since, start, last, page, then (set, value, escaped value) for msisdn, scope, state.
-- Returns next start, last member, members scanned, then i m s st d a b per matching record, ordered by (at, id).
local function docs_page(keys, a)
  local p = keys[1]
  local x = p .. 'dx:' .. a[1] .. ':'
  local since, page = a[2], tonumber(a[5])
  local names = {'m', 's', 'st'}
  local want, driver, best = {}, x .. 'at', -1
  for j = 0, 2 do
    if a[6 + 3 * j] == '1' then
      local raw = a[7 + 3 * j]
      want[#want + 1] = {j + 2, raw}
      if raw ~= '' then
        local key = x .. names[j + 1] .. ':' .. a[8 + 3 * j]
        local c = redis.call('ZCARD', key)
        if best < 0 or c < best then best, driver = c, key end
      end
    end
  end
  local start = start_at(driver, a[4], tonumber(a[3]), since, false)
  local ids = redis.call('ZRANGE', driver, start, start + page - 1)
  local out = {start + #ids, ids[#ids] or '', #ids}
  local lo = since ~= '' and tonumber(since) or nil
  local d = p .. 'd:' .. a[1] .. ':'
  for _, ide in ipairs(ids) do
    local h = redis.call('HMGET', d .. ide, 'i', 'm', 's', 'st', 'd', 'a', 'b')
    local ok = h[1] ~= false
    for _, w in ipairs(want) do
      if ok and h[w[1]] ~= w[2] then ok = false end
    end
    if ok and lo and tonumber(h[6]) < lo then ok = false end
    if ok then
      for q = 1, 7 do out[#out + 1] = h[q] end
    end
  end
  return out
end

-- args: escaped kind, before, limit: i m s st d a b per record whose due <= before, earliest first
local function docs_due(keys, a)
  local p = keys[1]
  local ids = redis.call('ZRANGE', p .. 'dx:' .. a[1] .. ':due', '-inf', a[2], 'BYSCORE', 'LIMIT', 0, a[3])
  local d = p .. 'd:' .. a[1] .. ':'
  local out = {}
  for _, ide in ipairs(ids) do
    local h = redis.call('HMGET', d .. ide, 'i', 'm', 's', 'st', 'd', 'a', 'b')
    if h[1] then
      for q = 1, 7 do out[#out + 1] = h[q] end
    end
  end
  return out
end

-- args: until, since, start, last, page, then (set, value, escaped value) for msisdn, service, operator, state.
-- Returns next start, last member, members scanned, done (1 when past `since`), then 14 fields per entry,
-- newest first.
local function ledger_page(keys, a)
  local p = keys[1]
  local names = {'m', 'sv', 'op', 'st'}
  local fields = {3, 4, 5, 11}
  local want, driver, best = {}, p .. 'lx:at', -1
  for j = 0, 3 do
    if a[6 + 3 * j] == '1' then
      local raw = a[7 + 3 * j]
      want[#want + 1] = {fields[j + 1], raw}
      local key = p .. 'lx:' .. names[j + 1] .. ':' .. a[8 + 3 * j]
      local c = redis.call('ZCARD', key)
      if best < 0 or c < best then best, driver = c, key end
    end
  end
  local start = start_at(driver, a[4], tonumber(a[3]), a[1], true)
  local got = redis.call('ZRANGE', driver, start, start + tonumber(a[5]) - 1, 'REV', 'WITHSCORES')
  local lo = a[2] ~= '' and tonumber(a[2]) or nil
  local out = {0, '', 0, 0}
  local scanned, last = 0, ''
  for j = 1, #got, 2 do
    local ide = got[j]
    if lo and tonumber(got[j + 1]) < lo then
      out[4] = 1
      break
    end
    scanned, last = scanned + 1, ide
    local h = redis.call('HMGET', p .. 'l:' .. ide, 'i', 'a', 'm', 'sv', 'op', 'am', 'cu', 'pp', 'sm', 'mi', 'os',
                         'orr', 'osm', 'oa')
    local ok = h[1] ~= false
    for _, w in ipairs(want) do
      local v = h[w[1]]
      if w[1] == 11 then v = v or 'pending' end
      if ok and v ~= w[2] then ok = false end
    end
    if ok then
      for q = 1, 14 do out[#out + 1] = h[q] end
    end
  end
  out[1], out[2], out[3] = start + scanned, last, scanned
  return out
end

-- args: set name, cursor, count: next cursor, then the records of the ids found (missing records are skipped)
local function scan_records(keys, a)
  local p = keys[1]
  local got = redis.call('SSCAN', p .. a[1], a[2], 'COUNT', tonumber(a[3]))
  local out = {got[1]}
  for _, id in ipairs(got[2]) do
    local r = redis.call('GET', p .. 'm:' .. id:gsub('%%', '%%25'):gsub(':', '%%3A'))
    if r then out[#out + 1] = r end
  end
  return out
end

redis.register_function('@_commit', commit)
redis.register_function('@_park', park)
redis.register_function('@_park_many', park_many)
redis.register_function('@_claim', claim)
redis.register_function('@_move_due', move_due)
redis.register_function('@_heartbeat', heartbeat)
redis.register_function{function_name = '@_live_nodes', callback = live_nodes, flags = {'no-writes'}}
redis.register_function{function_name = '@_docs_page', callback = docs_page, flags = {'no-writes'}}
redis.register_function{function_name = '@_docs_due', callback = docs_due, flags = {'no-writes'}}
redis.register_function{function_name = '@_ledger_page', callback = ledger_page, flags = {'no-writes'}}
redis.register_function{function_name = '@_scan_records', callback = scan_records, flags = {'no-writes'}}
"""

LIBRARY = "smppgw_" + hashlib.sha1(_LUA.encode()).hexdigest()[:10]
"""The name of the function library (it changes with the code, so nodes of two versions can share a server)."""

_LIBRARY_CODE = f"#!lua name={LIBRARY}\n" + _LUA.replace("'@_", f"'{LIBRARY}_")


# ---- what a commit takes and returns -------------------------------------------------------------------------


@dataclass(slots=True)
class RedisWrites(Writes):
    """`Writes` plus the operations of the shared queue and the compare-and-set, committed atomically with them.

    Attributes:
        enqueue: (stream, message_id): a stream entry for the message. When the message is among `messages`, the
            entry is added only if its record write is (see `expect`).
        delay: (stream, message_id, due): the message goes to the stream's delayed set until `due` (wall-clock
            seconds); `move_due` moves it to the stream. Tied to the record write as `enqueue` is.
        ack: (stream, entry_id): the entry is done: acknowledged and deleted from the stream.
        expect: message_id -> the version this node's change of the message was based on (0: the record must not
            exist). The write is refused if the stored version differs, unless every write since that version came
            from this same node (its own earlier writes still in flight); SqliteStore ignores this field.
    """

    enqueue: list[tuple[str, str]] = field(default_factory=list)
    delay: list[tuple[str, str, float]] = field(default_factory=list)
    ack: list[tuple[str, str]] = field(default_factory=list)
    expect: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(Writes.__bool__(self) or self.enqueue or self.delay or self.ack)

    def extend(self, other: Writes) -> None:
        Writes.extend(self, other)
        if isinstance(other, RedisWrites):
            self.enqueue.extend(other.enqueue)
            self.delay.extend(other.delay)
            self.ack.extend(other.ack)
            self.expect.update(other.expect)


@dataclass(frozen=True, slots=True)
class Conflict:
    """A record write refused by the compare-and-set: the stored version and record (None when there is none)."""

    version: int
    message: Message | None


@dataclass(frozen=True, slots=True)
class ParkedReceipt:
    """A receipt parked (by any node) under a key that this commit registered: apply it to `message_id`/`part`,
    then write `early_receipts_done=[id]` with the result."""

    id: int
    smsc: str
    at: float
    pdu: bytes
    message_id: str
    part: int


class ReceiptHit:
    """A receipt that `match_or_park_many` matched: its message and part, with the message's stored record and
    version as they were when it matched (`record` None: there is no record, say it expired).

    The record is decoded when `record` is first read: a node that holds the message itself never needs it.
    """

    __slots__ = ("_raw", "_record", "message_id", "part", "version")

    def __init__(self, message_id: str, part: int, record: Message | None, version: int, *,
                 raw: memoryview | None = None) -> None:
        self.message_id = message_id
        self.part = part
        self.version = version
        self._record = record
        self._raw = raw  # the encoded record, when `record` is not decoded yet

    @property
    def record(self) -> Message | None:
        if self._raw is not None:
            self._record = decode_record(self._raw)
            self._raw = None
        return self._record

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReceiptHit):
            return NotImplemented
        return (self.message_id, self.part, self.version, self.record) == (
            other.message_id, other.part, other.version, other.record)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ReceiptHit({self.message_id!r}, {self.part}, {self.record!r}, {self.version})"


class _BlockingSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool):
    """Connections to the primary that the Sentinels name (each new connection asks them), from a pool that makes
    a caller wait for a free connection rather than fail, as the store's BlockingConnectionPool does."""


class RedisUnavailable(StoreClosed):
    """Redis did not answer a call outside the group commit (connection lost, timeout, failover, an error reply);
    what the call would have written may or may not have been applied. Ask again later."""


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one `commit` did.

    Attributes:
        early_ids: the ids given to `writes.early_receipts`, in order.
        versions: message_id -> its version after this commit (for the messages written).
        conflicts: message_id -> the newer record that refused the write (Rule 4).
        parked: receipts waiting under the SMSC ids this commit registered (Rule 5).
    """

    early_ids: tuple[int, ...] = ()
    versions: Mapping[str, int] = field(default_factory=dict)
    conflicts: Mapping[str, Conflict] = field(default_factory=dict)
    parked: tuple[ParkedReceipt, ...] = ()


class PendingCommit:
    """A commit queued by `commit_nowait`: `done` is set once it is durable (or failed); then `result()`."""

    __slots__ = ("_error", "_result", "done")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self._result: CommitResult | None = None
        self._error: BaseException | None = None

    def result(self) -> CommitResult:
        """The commit's result.

        Raises:
            StoreClosed: the commit failed.
            RuntimeError: it has not finished yet.
        """
        if self._error is not None:
            raise StoreClosed(f"commit failed: {self._error!r}")
        if self._result is None:
            raise RuntimeError("the commit has not finished")
        return self._result


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One claimed stream entry: ack it (`RedisWrites.ack` or `ack`) once the message's outcome is written."""

    stream: str
    entry_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    length: int
    pending: int
    delayed: int
    consumers: Mapping[str, int]


@dataclass(slots=True)
class _Slot:
    """Where one `Writes` of a batch sits in the commit's arguments and results."""

    pending: PendingCommit
    message_ids: list[str]
    msg_start: int
    early_start: int
    early_count: int
    smsc_start: int
    smsc_ids: list[tuple[str, str, str, int]]


@dataclass(slots=True)
class _Inflight:
    """The commit on its way: kept until Redis answered it, so that it can be resent unchanged."""

    args: list[Any]
    slots: list[_Slot]
    rows: int
    started: float


_SECTION_ORDER = "MCIEXODLRQZA"


class RedisStore:
    """The store on Redis, shared by the nodes of a deployment (module docstring: rules and key layout).

    Args:
        url: redis://, rediss:// or unix:// URL of the primary, or redis+sentinel:// (rediss+sentinel://) URL of
            the Sentinels that name it (`parse_sentinel_url`): every client then connects to the primary they
            name, and after a failover to the new one.
        node: this node's name, unique in the deployment (the stream consumer, the writer of a record).
        group: the deployment; keys are prefixed `{prefix}:{{{group}}}:`.
        receipt_wait_s: how long an SMSC message id stays correlated (config messages.receipt_wait_s).
        idempotency_ttl_s: how long an Idempotency-Key is remembered.
        early_receipt_ttl_s: how long a receipt without its message is kept (default: `receipt_wait_s`).
        final_ttl_s: a final message's record expires this long after it became final (None: kept, as SQLite does).
        mo_ttl_s: MO records expire after this long (None: kept).
        wait_replicas: after each commit, WAIT until this many replicas have it (0: do not wait).
        wait_timeout_ms: how long WAIT waits; a commit that fewer replicas took is still accepted, counted and logged.
        commit_interval_s: wait this long after the first write of a batch before committing, to gather more.
        consumer_group: the consumer group of every stream.
        retry_max_s: the longest pause between two attempts of a commit while Redis is unreachable.
        socket_timeout_s: a command without an answer for this long counts as a lost connection.
        close_timeout_s: on shutdown, how long to keep trying to commit what is pending.
        max_connections: connections for reads and for blocking claims (each pool); a read waits for a free one.
        allow_sync_reads: False makes the blocking reads raise RuntimeError while an event loop runs in this thread
            (run the tests so to find calls that should use the async twins).
    """

    def __init__(self, url: str, *, node: str, group: str = "default", prefix: str = "smppgw",
                 receipt_wait_s: float = 72 * 3600.0, idempotency_ttl_s: float = 24 * 3600.0,
                 early_receipt_ttl_s: float | None = None, final_ttl_s: float | None = None,
                 mo_ttl_s: float | None = None, wait_replicas: int = 0, wait_timeout_ms: int = 1000,
                 commit_interval_s: float = 0.0, consumer_group: str = "gw", retry_max_s: float = 2.0,
                 socket_timeout_s: float = 10.0, close_timeout_s: float = 10.0, max_connections: int = 64,
                 allow_sync_reads: bool = True) -> None:
        if not node or any(c < " " for c in node):
            raise ValueError(f"a node name is required, without control characters: {node!r}")
        self.url = url
        self.sentinel_url = parse_sentinel_url(url) if url.startswith(SENTINEL_SCHEMES) else None
        self.node = node
        self.group = group
        self.prefix = key_prefix(prefix, group)
        self.receipt_wait_s = receipt_wait_s
        self.idempotency_ttl_s = idempotency_ttl_s
        self.early_receipt_ttl_s = receipt_wait_s if early_receipt_ttl_s is None else early_receipt_ttl_s
        self.final_ttl_s = final_ttl_s
        self.mo_ttl_s = mo_ttl_s
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.commit_interval_s = commit_interval_s
        self.consumer_group = consumer_group
        self.retry_max_s = retry_max_s
        self.socket_timeout_s = socket_timeout_s
        self.close_timeout_s = close_timeout_s
        self.max_connections = max_connections
        self.allow_sync_reads = allow_sync_reads
        self._node_e = _e(node)
        self._boot = secrets.token_hex(6)
        self._seq = 0
        self._batch: list[tuple[Writes, PendingCommit]] = []
        self._inflight: _Inflight | None = None
        self._wake = anyio.Event()
        self._client: redis.asyncio.Redis | None = None
        self._blocking: redis.asyncio.Redis | None = None
        self._committer: redis.asyncio.Redis | None = None
        self._sync: redis.Redis | None = None
        self._sentinel: redis.asyncio.sentinel.Sentinel | None = None
        self._sync_sentinel: redis.sentinel.Sentinel | None = None
        self._open = False
        self._reads_only = False
        self._healthy = True
        self._failed: BaseException | None = None
        self._commits = 0
        self._rows = 0
        self._last_commit_s = 0.0
        self.under_replicated_commits = 0
        self.commit_retries = 0
        self.sync_reads = 0

    # ---- lifecycle -------------------------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        # protocol 2: the replies' shapes below are RESP2's. No client-side retries: a commit is retried by
        # `_call_commit` (Rule 3), a read by its caller.
        return {"protocol": 2, "socket_timeout": self.socket_timeout_s, "socket_connect_timeout": self.socket_timeout_s,
                "retry": Retry(NoBackoff(), 0), "health_check_interval": 0}

    def _sentinel_options(self, u: SentinelUrl) -> tuple[dict[str, Any], dict[str, Any]]:
        """The options of the connections to the Sentinels, and those (besides `_options`) to the primary."""
        tls: dict[str, Any] = {}
        if u.ssl:
            tls = {"ssl": True, "ssl_ca_certs": u.ssl_ca_certs, "ssl_check_hostname": u.ssl_check_hostname}
        return ({**self._options(), "password": u.sentinel_password, **tls},
                {"db": u.db, "username": u.username, "password": u.password, **tls})

    def _sync_client(self) -> redis.Redis:
        if self._sync is None:
            if not (self._open or self._reads_only):
                raise StoreClosed("the store is not open")
            u = self.sentinel_url
            if u is None:
                self._sync = redis.Redis.from_url(self.url, **self._options())
            else:
                sentinel_options, primary = self._sentinel_options(u)
                self._sync_sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                    u.sentinels, sentinel_kwargs=sentinel_options, **primary)
                self._sync = self._sync_sentinel.master_for(  # type: ignore[no-untyped-call]
                    u.service_name, **self._options())
        return self._sync

    def open_sync(self) -> None:
        """Connect the blocking client and load the functions: the sync reads work without `run` (tools, tests);
        writing still needs `run`."""
        self._reads_only = True
        client = self._sync_client()
        if not client.function_list(library=LIBRARY):
            try:
                client.function_load(_LIBRARY_CODE)
            except redis.exceptions.ResponseError as exc:
                if "already exists" not in str(exc):
                    raise

    @property
    def is_open(self) -> bool:
        return self._open and self._healthy and self._failed is None

    @property
    def client(self) -> redis.asyncio.Redis:
        """The async client (a pool) while the store runs: for services sharing the deployment's Redis, such as
        gateway._ratelimit_redis.SharedRateLimiter.

        Raises:
            StoreClosed: the store is not running.
        """
        if self._client is None:
            raise StoreClosed("the store is not open")
        return self._client

    async def _load_functions(self) -> None:
        assert self._client is not None
        if await self._client.function_list(library=LIBRARY):
            return
        try:
            await self._client.function_load(_LIBRARY_CODE)
        except redis.exceptions.ResponseError as exc:
            if "already exists" not in str(exc):  # another node loaded it meanwhile
                raise
        log.info("redis: function library %s loaded", LIBRARY)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, load the functions, then commit batches until cancelled; on cancel, commit what is pending
        (for up to `close_timeout_s`) and close."""
        options = self._options()
        u = self.sentinel_url
        if u is None:
            # Pools that make a caller wait for a free connection rather than fail (the caller owns the timeout).
            self._client = redis.asyncio.Redis(connection_pool=redis.asyncio.BlockingConnectionPool.from_url(
                self.url, max_connections=self.max_connections, timeout=None, **options))
            self._blocking = redis.asyncio.Redis(connection_pool=redis.asyncio.BlockingConnectionPool.from_url(
                self.url, max_connections=self.max_connections, timeout=None, **{**options, "socket_timeout": None}))
            self._committer = redis.asyncio.Redis.from_url(self.url, single_connection_client=True, **options)
        else:
            # The same clients on pools whose connections ask the Sentinels for the primary when they connect. A
            # connection that gets READONLY (its server was demoted) drops itself and raises ConnectionError, which
            # `_call_commit` retries (Rule 3); the next connection goes to the primary the Sentinels name then.
            sentinel_options, primary = self._sentinel_options(u)
            self._sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                u.sentinels, sentinel_kwargs=sentinel_options, **primary)
            self._client = self._sentinel.master_for(u.service_name, connection_pool_class=_BlockingSentinelPool,
                                                     max_connections=self.max_connections, timeout=None, **options)
            self._blocking = self._sentinel.master_for(
                u.service_name, connection_pool_class=_BlockingSentinelPool, max_connections=self.max_connections,
                timeout=None, **{**options, "socket_timeout": None})
            # One connection, as WAIT (`_wait_replicas`) counts the replicas that have this connection's writes; a
            # pool of one rather than single_connection_client, whose connection reconnects to the address it had,
            # not to the one the Sentinels name (redis-py issue 3874): a pool connects through `connect()`, which asks.
            self._committer = self._sentinel.master_for(u.service_name, connection_pool_class=_BlockingSentinelPool,
                                                        max_connections=1, timeout=None, **options)
        try:
            await self._load_functions()
            self._open = True
            log.info("redis store open: node=%s keys=%s", self.node, self.prefix)
            task_status.started()
            while True:
                await self._wake.wait()
                if self.commit_interval_s > 0:
                    await anyio.sleep(self.commit_interval_s)
                await self._commit_pending()
        finally:
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(self.close_timeout_s):
                    while self._failed is None and (self._inflight is not None or self._batch):
                        await self._commit_pending()
                closed = StoreClosed("the store closed before this commit was acknowledged")
                left = [p for _, p in self._batch]
                if self._inflight is not None:
                    left += [slot.pending for slot in self._inflight.slots]
                for pending in left:
                    pending._error = closed
                    pending.done.set()
                self._batch = []
                self._inflight = None
                self._open = False
                for client in (self._client, self._committer, self._blocking):
                    if client is not None:
                        with anyio.move_on_after(1):
                            await client.aclose(close_connection_pool=True)
                if self._sentinel is not None:
                    with anyio.move_on_after(1):
                        await self._sentinel.aclose()
                if self._sync is not None:
                    self._sync.close()
                if self._sync_sentinel is not None:
                    self._sync_sentinel.close()
                self._client = self._committer = self._blocking = None
                self._sync = None
                self._sentinel = self._sync_sentinel = None

    # ---- writing ---------------------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if not self._open or self._failed is not None:
            raise StoreClosed("the store is not open" if self._failed is None else f"store failed: {self._failed!r}")

    def commit_nowait(self, writes: Writes) -> PendingCommit:
        """Queue `writes` (a `Writes` or `RedisWrites`) for the next commit; the result comes with `done`.

        Raises:
            StoreClosed: the store is closed or failed.
        """
        self._check_writable()
        pending = PendingCommit()
        self._batch.append((writes, pending))
        self._wake.set()
        return pending

    def queued_last(self, pending: PendingCommit) -> bool:
        """Whether `pending` is the newest commit queued and not taken by the commit loop yet: what is added to its
        Writes now is committed with it, in the order the writes were made."""
        return bool(self._batch) and self._batch[-1][1] is pending

    async def commit(self, writes: Writes) -> CommitResult:
        """Make `writes` durable in the next commit and return what it did (versions, conflicts, parked receipts).

        Raises:
            StoreClosed: the store is closed or the commit failed.
        """
        pending = self.commit_nowait(writes)
        await pending.done.wait()
        return pending.result()

    async def write(self, writes: Writes, *, bulk: bool = False) -> list[int]:
        """The Store protocol's write: durable once it returns; the ids given to new early receipts. Commits keep
        their order: a bulk write is an ordinary one.

        Raises:
            StoreClosed: the store is closed or the commit failed.
        """
        return list((await self.commit(writes)).early_ids)

    def write_nowait(self, writes: Writes) -> anyio.Event:
        """Queue `writes` for the next commit without waiting; the event is set once it is durable.

        Raises:
            StoreClosed: the store is closed or failed.
            ValueError: `writes` holds early receipts (their ids are returned: use write()).
        """
        if writes.early_receipts:
            raise ValueError("early receipts need write(): their row ids are returned")
        return self.commit_nowait(writes).done

    def _build(self, batch: list[tuple[Writes, PendingCommit]], seq: int) -> tuple[list[Any], list[_Slot], int]:
        """The commit function's arguments for `batch`, where each Writes' results will be, and the row count."""
        now = time.time()
        sections: dict[str, list[Any]] = {tag: [] for tag in _SECTION_ORDER}
        counts = dict.fromkeys(_SECTION_ORDER, 0)
        blobs: list[bytes] = []
        slots: list[_Slot] = []
        m_args, c_args = sections["M"], sections["C"]
        for w, pending in batch:
            slot = _Slot(pending, [], counts["M"], counts["E"], len(w.early_receipts), counts["C"], list(w.smsc_ids))
            slots.append(slot)
            streams: dict[str, list[str]] = {}
            delays: dict[str, list[tuple[str, float]]] = {}
            expect: Mapping[str, int] = {}
            if isinstance(w, RedisWrites):
                expect = w.expect
                ids = {m.id for m in w.messages}
                for stream, mid in w.enqueue:
                    if mid in ids:
                        streams.setdefault(mid, []).append(stream)
                    else:
                        sections["Q"] += (_e(stream), mid)
                        counts["Q"] += 1
                for stream, mid, due in w.delay:
                    if mid in ids:
                        delays.setdefault(mid, []).append((stream, due))
                    else:
                        sections["Z"] += (_e(stream), mid, _f(due))
                        counts["Z"] += 1
                for stream, entry in w.ack:
                    sections["A"] += (_e(stream), entry)
                    counts["A"] += 1
            last = {m.id: i for i, m in enumerate(w.messages)} if streams or delays else {}
            for i, m in enumerate(w.messages):
                enq: Sequence[str] = ()
                dl: Sequence[tuple[str, float]] = ()
                if last and last[m.id] == i:  # the queue operations go with the message's last write
                    enq = streams.get(m.id, ())
                    dl = delays.get(m.id, ())
                blobs.append(ENCODER.encode(m))
                m_args += (m.id, _e(m.id), expect.get(m.id, -1), "1" if m.is_final else "0",
                           "1" if m.callback_pending else "0", len(blobs), len(enq), len(dl))
                if enq or dl:
                    m_args += [_e(s) for s in enq]
                    for stream, due in dl:
                        m_args += (_e(stream), _f(due))
                slot.message_ids.append(m.id)
            counts["M"] += len(w.messages)
            for smsc, key, mid, part in w.smsc_ids:
                c_args += (_e(smsc), _e(key), f"{mid} {part}")
            counts["C"] += len(w.smsc_ids)
            for r in w.idempotency:
                blobs.append(_PACK.encode((r.body_hash, list(r.message_ids), r.at)))
                sections["I"] += (r.account, _e(r.key), len(blobs))
            counts["I"] += len(w.idempotency)
            for smsc, pdu in w.early_receipts:
                blobs.append(_PACK.encode((smsc, now, pdu)))
                sections["E"] += (len(blobs), _e(smsc))
            counts["E"] += len(w.early_receipts)
            sections["X"] += w.early_receipts_done
            counts["X"] += len(w.early_receipts_done)
            for mo_id, at, record in w.mo:
                blobs.append(_PACK.encode((at, record)))
                sections["O"] += (_e(mo_id), len(blobs))
            counts["O"] += len(w.mo)
            for d in w.docs:
                blobs.append(d.body)
                sections["D"] += (_e(d.kind), _e(d.id), d.id, d.msisdn, d.scope, d.state,
                                  "" if d.due is None else _f(d.due), _f(d.at), len(blobs), _e(d.msisdn), _e(d.scope),
                                  _e(d.state))
            counts["D"] += len(w.docs)
            for e in w.ledger:
                sections["L"] += (_e(e.id), e.id, _f(e.at), e.msisdn, e.service, e.operator, e.amount, e.currency,
                                  e.price_point, e.smsc, e.message_id, _e(e.msisdn), _e(e.service), _e(e.operator))
            counts["L"] += len(w.ledger)
            for o in w.ledger_outcomes:
                blobs.append(_PACK.encode((o.at, o.state, o.reason, o.smsc_message_id)))
                sections["R"] += (_e(o.attempt_id), _f(o.at), o.state, o.reason, o.smsc_message_id, _e(o.state),
                                  len(blobs))
            counts["R"] += len(w.ledger_outcomes)
        flat: list[Any] = []
        for tag in _SECTION_ORDER:
            if counts[tag]:
                flat += (tag, counts[tag])
                flat += sections[tag]
        args: list[Any] = [self._node_e, self._boot, seq, _MARKER_TTL_S, _ttl(self.final_ttl_s),
                           _ttl(self.receipt_wait_s), _ttl(self.idempotency_ttl_s), _ttl(self.early_receipt_ttl_s),
                           _f(now - self.early_receipt_ttl_s), _f(now), _ttl(self.mo_ttl_s), self.consumer_group,
                           _PACK.encode(flat), *blobs]
        return args, slots, sum(counts.values())

    async def _commit_pending(self) -> None:
        """Commit the batch gathered so far, or finish the commit that a cancellation interrupted."""
        if self._inflight is None:
            batch = self._batch
            self._batch = []
            self._wake = anyio.Event()
            if not batch:
                return
            self._seq += 1
            try:
                args, slots, rows = self._build(batch, self._seq)
            except BaseException as exc:
                self._fail([p for _, p in batch], exc)
                raise
            self._inflight = _Inflight(args, slots, rows, time.perf_counter())
        inflight = self._inflight
        try:
            reply = await self._call_commit(inflight.args)
            results = await self._results(reply, inflight.slots)
        except anyio.get_cancelled_exc_class():
            raise  # `_inflight` stays: run() resends it on the way out (Rule 3: applied at most once)
        except BaseException as exc:
            self._inflight = None
            self._fail([slot.pending for slot in inflight.slots], exc)
            raise
        self._inflight = None
        if self.wait_replicas > 0:
            await self._wait_replicas()
        self._last_commit_s = time.perf_counter() - inflight.started
        self._commits += 1
        self._rows += inflight.rows
        for slot, result in zip(inflight.slots, results, strict=True):
            slot.pending._result = result
            slot.pending.done.set()

    def _fail(self, pendings: Iterable[PendingCommit], exc: BaseException) -> None:
        for pending in pendings:
            pending._error = exc
            pending.done.set()
        self._failed = exc
        log.error("redis store: commit failed, the gateway can no longer make writes durable: %r", exc)

    async def _call_commit(self, args: list[Any]) -> bytes:
        """Send the commit until Redis answers it (Rule 3: resending is safe)."""
        assert self._committer is not None
        delay = 0.05
        outage: float | None = None
        while True:
            try:
                reply = await _acall(self._committer, "FCALL", f"{LIBRARY}_commit", 1, self.prefix, *args)
            except _TRANSIENT_ERRORS as exc:
                problem: BaseException = exc
            except redis.exceptions.ResponseError as exc:
                text = str(exc)
                if "function not found" in text.lower():  # a server restarted without its AOF, or FUNCTION FLUSH
                    await self._load_functions()
                    continue
                if not text.startswith(_TRANSIENT_REPLIES):
                    raise
                problem = exc
            else:
                if outage is not None:
                    log.warning("redis store: commits resumed after %.1f s", time.monotonic() - outage)
                self._healthy = True
                if reply == b"stale":
                    raise RuntimeError("redis store: the commit marker is ahead of this store's sequence")
                return cast(bytes, reply)
            if outage is None:
                outage = time.monotonic()
                log.warning("redis store: commit not acknowledged (%r); retrying until Redis answers", problem)
            self._healthy = False
            self.commit_retries += 1
            await anyio.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)

    async def _wait_replicas(self) -> None:
        assert self._committer is not None
        try:
            got = int(await _acall(self._committer, "WAIT", self.wait_replicas, self.wait_timeout_ms))
        except redis.exceptions.RedisError as exc:
            got = -1
            log.warning("redis store: WAIT failed: %r", exc)
        if got < self.wait_replicas:
            self.under_replicated_commits += 1
            if self.under_replicated_commits in (1, 10, 100) or self.under_replicated_commits % 1000 == 0:
                log.warning("redis store: a commit reached %d of %d replicas within %d ms (%d such commits)",
                            max(got, 0), self.wait_replicas, self.wait_timeout_ms, self.under_replicated_commits)

    async def _results(self, reply: bytes, slots: list[_Slot]) -> list[CommitResult]:
        _, versions_s, early_s, parked_s = reply.decode().split("|")
        versions = [int(v) for v in versions_s.split(",")] if versions_s else []
        early = [int(v) for v in early_s.split(",")] if early_s else []
        parked = [(int(pos), int(eid)) for pos, _, eid in (x.partition(":") for x in parked_s.split(","))] \
            if parked_s else []
        conflict_ids = [mid for slot in slots for i, mid in enumerate(slot.message_ids)
                        if versions[slot.msg_start + i] < 0]
        fetched: dict[str, tuple[int, Message | None]] = {}
        early_records: dict[int, tuple[str, float, bytes]] = {}
        if conflict_ids or parked:
            # A conflict or a parked receipt is rare: fetching their records costs one more round trip then only.
            assert self._client is not None
            pipe = self._client.pipeline(transaction=False)
            for mid in conflict_ids:
                pipe.get(self._key("m:", _e(mid)))
            parked_ids = sorted({eid for _, eid in parked})
            if parked_ids:
                pipe.hmget(self.prefix + "er", [str(i) for i in parked_ids])
            replies = await pipe.execute()
            for mid, stored in zip(conflict_ids, replies, strict=False):
                fetched[mid] = (0, None) if stored is None else _message(stored)
            if parked_ids:
                for eid, raw in zip(parked_ids, replies[-1], strict=True):
                    if raw is not None:
                        early_records[eid] = _EARLY.decode(raw)
        out = []
        for slot in slots:
            vers: dict[str, int] = {}
            conflicts: dict[str, Conflict] = {}
            for i, mid in enumerate(slot.message_ids):
                v = versions[slot.msg_start + i]
                if v >= 0:
                    vers[mid] = v
                    conflicts.pop(mid, None)
                else:
                    version, msg = fetched.get(mid, (-v - 1, None))
                    conflicts[mid] = Conflict(version, msg)
            mine: list[ParkedReceipt] = []
            seen: set[int] = set()
            for pos, eid in parked:
                if slot.smsc_start <= pos < slot.smsc_start + len(slot.smsc_ids) and eid not in seen:
                    rec = early_records.get(eid)
                    if rec is None:
                        continue  # applied and removed by another node meanwhile
                    seen.add(eid)
                    _, _, mid, part = slot.smsc_ids[pos - slot.smsc_start]
                    mine.append(ParkedReceipt(eid, rec[0], rec[1], rec[2], mid, part))
            out.append(CommitResult(tuple(early[slot.early_start:slot.early_start + slot.early_count]), vers,
                                    conflicts, tuple(mine)))
        return out

    # ---- reading: one plan per read, run by the async or the blocking client --------------------------------

    def _key(self, kind: str, *parts: str) -> str:
        return self.prefix + kind + ":".join(parts)

    async def _arun(self, plan: Plan[T]) -> T:
        client = self._client
        if client is None or not self._open:
            raise StoreClosed("the store is not open")
        try:
            cmds = next(plan)
            while True:
                if len(cmds) == 1:
                    replies = [await _acall(client, *cmds[0])]
                else:
                    pipe = client.pipeline(transaction=False)
                    for c in cmds:
                        pipe.execute_command(*c)
                    replies = await pipe.execute()
                cmds = plan.send(replies)
        except StopIteration as stop:
            return cast(T, stop.value)

    def _srun(self, plan: Plan[T]) -> T:
        if not self.allow_sync_reads and _loop_running():
            raise RuntimeError("a blocking Redis read inside the event loop: use the async twin (aget, adocs, ...)")
        client = self._sync_client()
        self.sync_reads += 1
        try:
            cmds = next(plan)
            while True:
                if len(cmds) == 1:
                    replies = [_call(client, *cmds[0])]
                else:
                    pipe = client.pipeline(transaction=False)
                    for c in cmds:
                        pipe.execute_command(*c)  # type: ignore[no-untyped-call]
                    replies = pipe.execute()
                cmds = plan.send(replies)
        except StopIteration as stop:
            return cast(T, stop.value)

    def _fcall_ro(self, name: str, *args: Any) -> Cmd:
        return ("FCALL_RO", f"{LIBRARY}_{name}", 1, self.prefix, *args)

    def _p_get(self, message_id: str) -> Plan[Message | None]:
        (raw,) = yield [("GET", self._key("m:", _e(message_id)))]
        return None if raw is None else _message(raw)[1]

    def _p_get_versioned(self, message_id: str) -> Plan[tuple[Message, int] | None]:
        (raw,) = yield [("GET", self._key("m:", _e(message_id)))]
        if raw is None:
            return None
        version, msg = _message(raw)
        return msg, version

    def _p_get_many(self, ids: Sequence[str]) -> Plan[list[Message | None]]:
        if not ids:
            return []
        (raws,) = yield [("MGET", *[self._key("m:", _e(i)) for i in ids])]
        return [None if r is None else _message(r)[1] for r in raws]

    def _p_get_many_versioned(self, ids: Sequence[str]) -> Plan[list[tuple[Message, int] | None]]:
        if not ids:
            return []
        (raws,) = yield [("MGET", *[self._key("m:", _e(i)) for i in ids])]
        out: list[tuple[Message, int] | None] = []
        for r in raws:
            if r is None:
                out.append(None)
            else:
                version, msg = _message(r)
                out.append((msg, version))
        return out

    def _p_idempotency(self, account: str, key: str) -> Plan[IdempotencyRecord | None]:
        (raw,) = yield [("GET", self._key("i:", account, _e(key)))]
        if raw is None:
            return None
        body_hash, slots, at = _IDEMPOTENCY.decode(raw)
        return IdempotencyRecord(account, key, body_hash, tuple(slots), at)

    def _p_lookup(self, smsc: str, keys: Sequence[str]) -> Plan[tuple[str, int] | None]:
        if not keys:
            return None
        s = _e(smsc)
        (values,) = yield [("MGET", *[self._key("c:", s, _e(k)) for k in keys])]
        for v in values:
            if v is not None:
                mid, _, part = v.decode().rpartition(" ")
                return mid, int(part)
        return None

    def _p_early(self) -> Plan[list[EarlyReceipt]]:
        (raw,) = yield [("HGETALL", self.prefix + "er")]
        out = []
        for eid, rec in cast(dict[bytes, bytes], raw).items():
            smsc, at, pdu = _EARLY.decode(rec)
            out.append(EarlyReceipt(int(eid), smsc, at, pdu))
        out.sort(key=lambda r: r.id)
        return out

    def _p_doc(self, kind: str, doc_id: str) -> Plan[Doc | None]:
        ((i, m, s, st, d, a, b),) = yield [("HMGET", self._key("d:", _e(kind), _e(doc_id)), "i", "m", "s", "st", "d",
                                            "a", "b")]
        return None if i is None else _doc(kind, (i, m, s, st, d, a, b))

    def _p_doc_many(self, kind: str, doc_ids: Sequence[str]) -> Plan[list[Doc | None]]:
        if not doc_ids:
            return []
        rows = yield [("HMGET", self._key("d:", _e(kind), _e(d)), "i", "m", "s", "st", "d", "a", "b") for d in doc_ids]
        return [None if row[0] is None else _doc(kind, tuple(row)) for row in rows]

    def _p_docs(self, kind: str, msisdn: str | None, scope: str | None, state: str | None, since: float | None,
                limit: int | None) -> Plan[list[Doc]]:
        filters: list[Any] = []
        for value in (msisdn, scope, state):
            filters += ("0", "", "") if value is None else ("1", value, _e(value))
        out: list[Doc] = []
        start, last = 0, ""
        while limit is None or len(out) < limit:
            page = _PAGE if limit is None else max(100, min(_PAGE, limit - len(out)))
            (reply,) = yield [self._fcall_ro("docs_page", _e(kind), "" if since is None else _f(since), start, last,
                                             page, *filters)]
            start, last, scanned = int(reply[0]), reply[1], int(reply[2])
            for j in range(3, len(reply), 7):
                out.append(_doc(kind, reply[j:j + 7]))
            if scanned < page:
                break
        return out if limit is None else out[:limit]

    def _p_docs_due(self, kind: str, before: float, limit: int) -> Plan[list[Doc]]:
        bound = "+inf" if before == float("inf") else _f(before)
        (reply,) = yield [self._fcall_ro("docs_due", _e(kind), bound, limit)]
        return [_doc(kind, reply[j:j + 7]) for j in range(0, len(reply), 7)]

    def _p_ledger(self, msisdn: str | None, service: str | None, operator: str | None, state: str | None,
                  since: float | None, until: float | None, limit: int) -> Plan[list[dict[str, object]]]:
        filters: list[Any] = []
        for value in (msisdn, service, operator, state):
            filters += ("0", "", "") if value is None else ("1", value, _e(value))
        out: list[dict[str, object]] = []
        start, last = 0, ""
        while len(out) < limit:
            page = max(100, min(_PAGE, limit - len(out)))
            (reply,) = yield [self._fcall_ro("ledger_page", "" if until is None else _f(until),
                                             "" if since is None else _f(since), start, last, page, *filters)]
            start, last, scanned, done = int(reply[0]), reply[1] or "", int(reply[2]), int(reply[3])
            for j in range(4, len(reply), 14):
                out.append(_ledger_row(reply[j:j + 14]))
            if done or scanned < page:
                break
        return out[:limit]

    def _p_scan_page(self, which: str, cursor: bytes) -> Plan[tuple[bytes, list[Message]]]:
        (reply,) = yield [self._fcall_ro("scan_records", which, cursor, _PAGE)]
        return reply[0], [_message(r)[1] for r in reply[1:]]

    def _p_mo(self, mo_id: str) -> Plan[tuple[float, bytes] | None]:
        (raw,) = yield [("GET", self._key("mo:", _e(mo_id)))]
        return None if raw is None else _MO.decode(raw)

    def _p_count(self) -> Plan[tuple[int, int]]:
        total, open_ = yield [("GET", self.prefix + "n"), ("SCARD", self.prefix + "open")]
        return int(total or 0), int(open_)

    # The Store protocol's reads (blocking: see the module docstring) and their async twins.

    def get(self, message_id: str) -> Message | None:
        return self._srun(self._p_get(message_id))

    async def aget(self, message_id: str) -> Message | None:
        """The stored record of a message (one round trip)."""
        return await self._arun(self._p_get(message_id))

    def get_versioned(self, message_id: str) -> tuple[Message, int] | None:
        return self._srun(self._p_get_versioned(message_id))

    async def aget_versioned(self, message_id: str) -> tuple[Message, int] | None:
        """The record and its version, for a write with `RedisWrites.expect` (one round trip)."""
        return await self._arun(self._p_get_versioned(message_id))

    def messages_by_ids(self, ids: Iterable[str]) -> list[Message]:
        return [m for m in self._srun(self._p_get_many(list(ids))) if m is not None]

    async def aget_many(self, ids: Sequence[str]) -> list[Message | None]:
        """The records of `ids`, None where there is none (one round trip)."""
        return await self._arun(self._p_get_many(ids))

    async def aget_many_versioned(self, ids: Sequence[str]) -> list[tuple[Message, int] | None]:
        """Records with their versions, in the order of `ids` (one round trip)."""
        return await self._arun(self._p_get_many_versioned(ids))

    def find_idempotency(self, account: str, key: str) -> IdempotencyRecord | None:
        return self._srun(self._p_idempotency(account, key))

    async def afind_idempotency(self, account: str, key: str) -> IdempotencyRecord | None:
        return await self._arun(self._p_idempotency(account, key))

    def lookup_smsc_id(self, smsc: str, keys: Sequence[str]) -> tuple[str, int] | None:
        return self._srun(self._p_lookup(smsc, keys))

    async def alookup_smsc_id(self, smsc: str, keys: Sequence[str]) -> tuple[str, int] | None:
        """(message_id, part) registered by any node under the first of `keys` found (one round trip)."""
        return await self._arun(self._p_lookup(smsc, keys))

    def early_receipts(self) -> list[EarlyReceipt]:
        return self._srun(self._p_early())

    async def aearly_receipts(self) -> list[EarlyReceipt]:
        return await self._arun(self._p_early())

    def open_messages(self) -> Iterator[Message]:
        """Every message that is not final (a page of up to 1000 per round trip)."""
        return self._scan_sync("open")

    def callback_pending(self) -> Iterator[Message]:
        """Every message whose final status has not reached its callback yet."""
        return self._scan_sync("cb")

    def _scan_sync(self, which: str) -> Iterator[Message]:
        cursor = b"0"
        while True:
            cursor, msgs = self._srun(self._p_scan_page(which, cursor))
            yield from msgs
            if cursor == b"0":
                return

    async def aopen_messages(self) -> AsyncIterator[Message]:
        async for m in self._scan_async("open"):
            yield m

    async def acallback_pending(self) -> AsyncIterator[Message]:
        async for m in self._scan_async("cb"):
            yield m

    async def _scan_async(self, which: str) -> AsyncIterator[Message]:
        cursor = b"0"
        while True:
            cursor, msgs = await self._arun(self._p_scan_page(which, cursor))
            for m in msgs:
                yield m
            if cursor == b"0":
                return

    def doc(self, kind: str, doc_id: str) -> Doc | None:
        return self._srun(self._p_doc(kind, doc_id))

    async def adoc(self, kind: str, doc_id: str) -> Doc | None:
        return await self._arun(self._p_doc(kind, doc_id))

    async def adoc_many(self, kind: str, doc_ids: Sequence[str]) -> list[Doc | None]:
        """The documents `doc_ids` of `kind`, None where there is none (one round trip)."""
        return await self._arun(self._p_doc_many(kind, doc_ids))

    def docs(self, kind: str, *, msisdn: str | None = None, scope: str | None = None, state: str | None = None,
             since: float | None = None, limit: int | None = None) -> list[Doc]:
        """Records of `kind` matching every filter given, oldest first."""
        return self._srun(self._p_docs(kind, msisdn, scope, state, since, limit))

    async def adocs(self, kind: str, *, msisdn: str | None = None, scope: str | None = None,
                    state: str | None = None, since: float | None = None, limit: int | None = None) -> list[Doc]:
        return await self._arun(self._p_docs(kind, msisdn, scope, state, since, limit))

    def docs_due(self, kind: str, before: float, limit: int = 1000) -> list[Doc]:
        """Records of `kind` whose `due` is at or before `before`, earliest first."""
        return self._srun(self._p_docs_due(kind, before, limit))

    async def adocs_due(self, kind: str, before: float, limit: int = 1000) -> list[Doc]:
        return await self._arun(self._p_docs_due(kind, before, limit))

    def ledger(self, *, msisdn: str | None = None, service: str | None = None, operator: str | None = None,
               state: str | None = None, since: float | None = None, until: float | None = None,
               limit: int = 1000) -> list[dict[str, object]]:
        """Charge attempts with their latest outcome (state "pending" until one is recorded), newest first."""
        return self._srun(self._p_ledger(msisdn, service, operator, state, since, until, limit))

    async def aledger(self, *, msisdn: str | None = None, service: str | None = None, operator: str | None = None,
                      state: str | None = None, since: float | None = None, until: float | None = None,
                      limit: int = 1000) -> list[dict[str, object]]:
        return await self._arun(self._p_ledger(msisdn, service, operator, state, since, until, limit))

    def mo(self, mo_id: str) -> tuple[float, bytes] | None:
        """An MO record as written (`Writes.mo`): (at, record)."""
        return self._srun(self._p_mo(mo_id))

    async def amo(self, mo_id: str) -> tuple[float, bytes] | None:
        return await self._arun(self._p_mo(mo_id))

    def count(self) -> tuple[int, int]:
        """(messages written, open messages)."""
        return self._srun(self._p_count())

    async def acount(self) -> tuple[int, int]:
        return await self._arun(self._p_count())

    def statistics(self) -> StoreStatistics:
        pending = sum(len(w.messages) + len(w.smsc_ids) + len(w.idempotency) + len(w.early_receipts) + len(w.mo)
                      for w, _ in self._batch)
        return StoreStatistics(self._commits, self._rows, self._last_commit_s, pending, self.is_open)

    # ---- receipts across nodes -------------------------------------------------------------------------

    async def match_or_park(self, smsc: str, keys: Sequence[str], pdu: bytes,
                            at: float | None = None) -> tuple[str, int] | int:
        """Look a receipt's keys up and, when none is registered, park it under them, atomically (Rule 5).

        Durable when it returns, like a commit (one round trip, outside the group commit).

        Args:
            smsc: the SMSC the receipt came from.
            keys: its lookup keys (dlr.receipt_keys), in order.
            pdu: the encoded deliver_sm, kept until the message is known.
            at: wall-clock seconds (default: now).

        Returns:
            (message_id, part) when a node registered one of the keys, else the id of the parked receipt (it also
            appears in `early_receipts()`; the commit that registers a matching id returns it in `parked`).
        """
        assert self._client is not None
        self._check_writable()
        now = time.time() if at is None else at
        rec = _PACK.encode((smsc, now, pdu))
        reply = await _acall(
            self._client,
            "FCALL", f"{LIBRARY}_park", 1, self.prefix, _e(smsc), len(keys), *[_e(k) for k in keys], rec,
            _f(now - self.early_receipt_ttl_s), _f(now), _ttl(self.early_receipt_ttl_s))
        if reply[0] == b"hit":
            mid, _, part = reply[1].decode().rpartition(" ")
            return mid, int(part)
        return int(reply[1])

    async def match_or_park_many(self, receipts: Sequence[tuple[str, Sequence[str], bytes]],
                                 at: float | None = None) -> list[ReceiptHit | int]:
        """`match_or_park` for many receipts in one round trip, each looked up and parked atomically (Rule 5).

        A hit comes with its message's stored record and version, read in the same step, so that applying the
        receipt needs no other read. Durable when it returns, like a commit.

        Args:
            receipts: (smsc, lookup keys, encoded deliver_sm) per receipt, as `match_or_park` takes them.
            at: wall-clock seconds (default: now).

        Returns:
            Per receipt, in order: a `ReceiptHit`, or the id of the parked receipt.

        Raises:
            StoreClosed: the store is not open.
            RedisUnavailable: Redis did not answer or refused the call; the receipts may have been parked.
        """
        if not receipts:
            return []
        self._check_writable()
        assert self._client is not None
        now = time.time() if at is None else at
        args: list[Any] = ["FCALL", f"{LIBRARY}_park_many", 1, self.prefix, _f(now - self.early_receipt_ttl_s),
                           _f(now), _ttl(self.early_receipt_ttl_s), len(receipts)]
        for smsc, keys, pdu in receipts:
            args += (_e(smsc), len(keys), *[_e(k) for k in keys], _PACK.encode((smsc, now, pdu)))
        try:
            try:
                reply = await _acall(self._client, *args)
            except redis.exceptions.ResponseError as exc:
                if "function not found" not in str(exc).lower():  # a server restarted without its AOF
                    raise
                await self._load_functions()
                reply = await _acall(self._client, *args)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise RedisUnavailable(f"matching {len(receipts)} receipts failed: {exc!r}") from exc
        out: list[ReceiptHit | int] = []
        for i in range(0, len(reply), 2):
            found, raw = reply[i], reply[i + 1]
            if isinstance(found, int):
                out.append(found)
                continue
            mid, _, part = found.decode().rpartition(" ")
            if raw is None:
                out.append(ReceiptHit(mid, int(part), None, 0))
            else:
                version, start = _header(raw)
                out.append(ReceiptHit(mid, int(part), None, version, raw=memoryview(raw)[start:]))
        return out

    # ---- the shared MT queue ---------------------------------------------------------------------------

    def _q(self, stream: str) -> str:
        return self._key("q:", _e(stream))

    async def ensure_group(self, stream: str) -> None:
        """Create the stream and its consumer group if missing (from the stream's start: no entry is skipped)."""
        assert self._client is not None
        try:
            await self._client.xgroup_create(self._q(stream), self.consumer_group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def enqueue(self, stream: str, message_id: str) -> str:
        """Add one entry outside a commit (inside one: `RedisWrites.enqueue`); returns the entry id."""
        assert self._client is not None
        entry = await self._client.xadd(self._q(stream), {"m": message_id})
        return cast(bytes, entry).decode()

    def _entries(self, stream: str, raw: Iterable[Any]) -> list[QueueEntry]:
        out = []
        for entry_id, fields in raw:
            if fields and b"m" in fields:
                out.append(QueueEntry(stream, entry_id.decode(), fields[b"m"].decode()))
        return out

    async def claim(self, stream: str, consumer: str, count: int, block_ms: int | None = None) -> list[QueueEntry]:
        """Take up to `count` new entries for `consumer` (XREADGROUP); they stay pending until acked.

        Args:
            block_ms: wait up to this long when none is there (None: return at once). The caller owns the
                cancellation; a blocked call uses a connection of its own.
        """
        client = self._blocking if block_ms is not None else self._client
        assert client is not None
        for attempt in (0, 1):
            try:
                reply = await client.xreadgroup(self.consumer_group, consumer, {self._q(stream): ">"}, count=count,
                                                block=block_ms)
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc) or attempt:
                    raise
                await self.ensure_group(stream)
                continue
            streams = cast(list[tuple[bytes, list[Any]]], reply or [])
            return [e for _, entries in streams for e in self._entries(stream, entries)]
        return []

    async def claim_records(self, stream: str, consumer: str, count: int
                            ) -> list[tuple[QueueEntry, tuple[Message, int] | None]]:
        """`claim` without blocking, each entry with its message's record and version read in the same step (one
        round trip, where `claim` then `aget_many_versioned` take two): None where there is no record.

        Raises:
            redis.exceptions.RedisError: Redis did not answer or refused the call (the entries may be claimed:
                they stay pending for this consumer, as after a lost `claim` reply).
        """
        assert self._client is not None
        args = ("FCALL", f"{LIBRARY}_claim", 1, self.prefix, _e(stream), self.consumer_group, consumer, count)
        for attempt in (0, 1):
            try:
                reply = await _acall(self._client, *args)
            except redis.exceptions.ResponseError as exc:
                text = str(exc)
                if attempt:
                    raise
                if "NOGROUP" in text:
                    await self.ensure_group(stream)
                elif "function not found" in text.lower():  # a server restarted without its AOF
                    await self._load_functions()
                else:
                    raise
                continue
            out: list[tuple[QueueEntry, tuple[Message, int] | None]] = []
            for i in range(0, len(reply), 3):
                raw = reply[i + 2]
                entry = QueueEntry(stream, reply[i].decode(), reply[i + 1].decode())
                if raw is None:
                    out.append((entry, None))
                else:
                    version, msg = _message(raw)
                    out.append((entry, (msg, version)))
            return out
        return []

    async def ack(self, stream: str, entry_ids: Sequence[str]) -> int:
        """Acknowledge and delete entries outside a commit (inside one: `RedisWrites.ack`); returns how many."""
        assert self._client is not None
        if not entry_ids:
            return 0
        pipe = self._client.pipeline(transaction=True)
        pipe.xack(self._q(stream), self.consumer_group, *entry_ids)
        pipe.xdel(self._q(stream), *entry_ids)
        acked, _ = await pipe.execute()
        return int(acked)

    async def reclaim(self, stream: str, consumer: str, min_idle_ms: int, count: int, *,
                      only_from: Collection[str] | None = None) -> list[QueueEntry]:
        """Take over entries that other consumers claimed and left unacknowledged for `min_idle_ms`.

        Args:
            only_from: take only from these consumers (for example those without a heartbeat: `dead_consumers`);
                None: from any (XAUTOCLAIM).
        """
        assert self._client is not None
        q = self._q(stream)
        out: list[QueueEntry] = []
        if only_from is None:
            start = "0-0"
            while len(out) < count:
                reply = await _acall(self._client, "XAUTOCLAIM", q, self.consumer_group, consumer, min_idle_ms,
                                                           start, "COUNT", count - len(out))
                start = reply[0].decode()
                out += self._entries(stream, reply[1])
                if len(reply) > 2 and reply[2]:  # entries deleted while pending: nothing to send any more
                    await self._client.xack(q, self.consumer_group, *reply[2])
                if start == "0-0":
                    break
            return out
        for dead in only_from:
            if len(out) >= count:
                break
            rows = await self._client.xpending_range(q, self.consumer_group, min="-", max="+", count=count - len(out),
                                                     consumername=dead, idle=min_idle_ms)
            ids: list[Any] = [r["message_id"] for r in rows]
            if ids:
                claimed = await self._client.xclaim(q, self.consumer_group, consumer, min_idle_ms, ids)
                out += self._entries(stream, claimed)
        return out

    async def touch(self, stream: str, consumer: str, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of entries `consumer` still works on, so `reclaim` leaves them alone."""
        assert self._client is not None
        if entry_ids:
            ids: list[Any] = list(entry_ids)
            await self._client.xclaim(self._q(stream), self.consumer_group, consumer, 0, ids, justid=True)

    async def last_entry_id(self, stream: str) -> str:
        """The id of the newest entry of `stream` ("0-0" when it is empty or missing): where a reader that has
        just read the state the stream's entries describe starts following it."""
        assert self._client is not None
        got = await self._client.xrevrange(self._q(stream), count=1)
        return cast(bytes, got[0][0]).decode() if got else "0-0"

    async def follow(self, stream: str, after: str, count: int, block_ms: int) -> list[tuple[str, str]]:
        """Read entries of `stream` after entry id `after` without a consumer group (every reader sees every
        entry): [(entry id, value)], waiting up to `block_ms` when there are none."""
        assert self._blocking is not None
        reply = await self._blocking.xread({self._q(stream): after}, count=count, block=block_ms)
        streams = cast(list[tuple[bytes, list[Any]]], reply or [])
        return [(eid.decode(), fields[b"m"].decode()) for _, entries in streams for eid, fields in entries
                if fields and b"m" in fields]

    async def trim_older(self, stream: str, age_s: float) -> int:
        """Drop the entries of a followed stream older than `age_s` (approximately); returns how many."""
        assert self._client is not None
        min_id = f"{max(0, int((time.time() - age_s) * 1000))}-0"
        return int(await _acall(self._client, "XTRIM", self._q(stream), "MINID", "~", min_id))

    async def move_due(self, stream: str, now: float, limit: int = 1000) -> int:
        """Move delayed entries due at `now` (wall clock) to the stream, atomically; returns how many moved."""
        assert self._client is not None
        return int(await _acall(self._client, "FCALL", f"{LIBRARY}_move_due", 1, self.prefix, _e(stream),
                                                      _f(now), limit))

    async def next_due(self, stream: str) -> float | None:
        """When the earliest delayed entry of `stream` is due (None: none waits)."""
        assert self._client is not None
        got = await self._client.zrange(self._key("qd:", _e(stream)), 0, 0, withscores=True)
        return float(got[0][1]) if got else None

    async def queue_statistics(self, stream: str) -> QueueStatistics:
        """Entries in the stream (pending included), pending per consumer, delayed."""
        assert self._client is not None
        pipe = self._client.pipeline(transaction=False)
        pipe.xlen(self._q(stream))
        pipe.zcard(self._key("qd:", _e(stream)))
        pipe.xpending(self._q(stream), self.consumer_group)
        length, delayed, pending = await pipe.execute(raise_on_error=False)
        consumers: dict[str, int] = {}
        total = 0
        if not isinstance(pending, Exception):  # NOGROUP: nobody claimed from this stream yet
            total = int(pending["pending"])
            for c in pending["consumers"]:
                consumers[c["name"].decode()] = int(c["pending"])
        return QueueStatistics(int(length), total, int(delayed), consumers)

    # ---- nodes -----------------------------------------------------------------------------------------

    async def heartbeat(self, ttl_s: float) -> None:
        """Say this node is alive for the next `ttl_s` seconds (of Redis's clock, the same for every node)."""
        assert self._client is not None
        await _acall(self._client, "FCALL", f"{LIBRARY}_heartbeat", 1, self.prefix, self._node_e,
                     max(1, round(ttl_s * 1000)))

    async def live_nodes(self) -> set[str]:
        """The nodes whose last heartbeat has not run out."""
        assert self._client is not None
        names = await _acall(self._client, "FCALL_RO", f"{LIBRARY}_live_nodes", 1, self.prefix)
        return {_unescape(n.decode()) for n in names}

    async def dead_consumers(self, stream: str) -> list[str]:
        """Consumers of `stream` holding pending entries but without a live heartbeat."""
        stats = await self.queue_statistics(stream)
        live = await self.live_nodes()
        return [c for c, n in stats.consumers.items() if n and c not in live]


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _header(raw: bytes) -> tuple[int, int]:
    """A stored message's version and where its record starts: "{version}\x1f{node}\x1f{final}{callback}\x1f"."""
    i = raw.index(b"\x1f")
    return int(raw[:i]), raw.index(b"\x1f", i + 1) + 4


def _message(raw: bytes) -> tuple[int, Message]:
    """A stored message: its version and record."""
    version, start = _header(raw)
    return version, decode_record(memoryview(raw)[start:])


def _unescape(part: str) -> str:
    return part.replace("%3A", ":").replace("%25", "%")


def _doc(kind: str, f: Sequence[Any]) -> Doc:
    i, m, s, st, d, a, b = f
    return Doc(kind, i.decode(), m.decode(), s.decode(), st.decode(), float(d) if d else None, float(a), bytes(b))


_LEDGER_KEYS = ("id", "at", "msisdn", "service", "operator", "amount", "currency", "price_point", "smsc", "message_id",
                "state", "reason", "smsc_message_id", "final_at")


def _ledger_row(f: Sequence[Any]) -> dict[str, object]:
    row: dict[str, object] = {k: None if v is None else v.decode() for k, v in zip(_LEDGER_KEYS, f, strict=True)}
    row["at"] = float(cast(str, row["at"]))
    if row["final_at"] is not None:
        row["final_at"] = float(cast(str, row["final_at"]))
    if row["state"] is None:
        row["state"] = "pending"
    return row

