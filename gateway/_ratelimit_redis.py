"""Per-account submit rate limits shared by every node of a deployment (a token bucket in Redis).

Rule: the rule of gateway._ratelimit (an account's limit counts messages; a request is admitted when the bucket
holds min(n, burst) tokens and then takes all n, going below zero for a batch larger than the burst), applied to
one bucket per account that all nodes share: one Lua script reads, refills and takes atomically, so the nodes
together admit no more than `rate_limit_per_s` messages a second over any long period, however the requests
are spread over them.
The clock is Redis's own (TIME inside the script) unless the limiter is handed one: one clock for all nodes, so
their skew does not matter. Tests hand in a fake clock, which the script receives as an argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio

from ._config import AccountConfig
from ._ratelimit import AccountRateLimiter, RateLimitStatistics

__all__ = ["SharedRateLimiter"]

# KEYS[1]: the bucket (hash: tokens, at, rate, burst). ARGV: rate, burst, now ('' for Redis TIME), n.
# Returns the wait in seconds as a string ('0' when admitted): a Lua number would be truncated to an integer.
# Numbers are stored with %.17g so that they read back exactly, as Python's float would hold them.
_TAKE = """
local rate, burst, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[3])
end
local h = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'rate', 'burst')
local tokens, at = burst, now
if h[1] and h[3] == ARGV[1] and h[4] == ARGV[2] then
  tokens, at = tonumber(h[1]), tonumber(h[2])
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
local need = math.min(n, burst)
local wait = 0
if tokens >= need then
  tokens = tokens - n
else
  wait = (need - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', at),
           'rate', ARGV[1], 'burst', ARGV[2])
-- Once full again the bucket equals a missing one: let it expire then.
redis.call('EXPIRE', KEYS[1], math.max(1, math.ceil((burst - tokens) / rate) + 1))
if wait == 0 then return '0' end
return string.format('%.17g', wait)
"""


class SharedRateLimiter:
    """One shared bucket per account that has `rate_limit_per_s` set (gateway._ratelimit's rule, across nodes).

    Args:
        client: the deployment's Redis (RedisStore.client).
        key_prefix: the deployment's key prefix (RedisStore.prefix); buckets are `{key_prefix}rl:{account}`.
        clock: seconds handed to the script (tests); None uses Redis's clock, the same for every node.

    The burst defaults to one second's worth of the rate when the account sets no `rate_limit_burst`. A reload
    that changes an account's rate or burst starts its bucket afresh (full), on whichever node takes first.
    `take` costs one round trip to Redis for a limited account and none for an unlimited one.
    """

    def __init__(self, client: redis.asyncio.Redis, *, key_prefix: str, clock: Callable[[], float] | None = None) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.clock = clock
        self._script: Any = client.register_script(_TAKE)
        self._accounts: set[str] = set()
        self.admitted = 0
        self.refused = 0

    async def take(self, account: AccountConfig, n: int) -> float:
        """Admit `n` messages for `account`: 0.0 when admitted, else the seconds to wait before asking again."""
        rate = account.rate_limit_per_s
        if rate is None:
            self.admitted += 1
            return 0.0
        burst = float(account.rate_limit_burst) if account.rate_limit_burst is not None else max(1.0, rate)
        now = "" if self.clock is None else repr(float(self.clock()))
        reply = await self._script(keys=[f"{self.key_prefix}rl:{account.id}"],
                                   args=[repr(float(rate)), repr(burst), now, n])
        self._accounts.add(account.id)
        wait = float(reply)
        if wait > 0.0:
            self.refused += 1
        else:
            self.admitted += 1
        return wait

    retry_after = staticmethod(AccountRateLimiter.retry_after)  # the same Retry-After rule

    def statistics(self) -> RateLimitStatistics:
        """This node's admissions and refusals; `accounts` counts the limited accounts this node has seen."""
        return RateLimitStatistics(self.admitted, self.refused, len(self._accounts))
