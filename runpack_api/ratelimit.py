"""Rate limits per client IP and per runner, with the ``limits`` library.

Counters live in Redis when one is configured (shared by every API process), in memory
otherwise. If the Redis cannot be reached the request is let through: a rate limiter
must not take the API down with it.

With Redis, an API process does not ask it on every request: it takes a lease of
1/100 of the limit at once (one hit of that cost) and serves that many requests from
memory until the lease runs out or its window ends. Requests of one client that find no
lease wait for the one among them that fetches it, so a burst takes one lease at a time
(and opens one Redis connection, not one per request). The total served never exceeds the
limit; a client may be refused up to (lease - 1) requests early per API process that holds
an unused lease. The default limits (10 to 1000 a minute) lease 1 to 10 requests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from starlette.requests import Request

from runpack_tasks.errors import RateLimited
from runpack_tasks.settings import IPNetwork, RunpackSettings

log = logging.getLogger(__name__)


class RateCategory(StrEnum):
    """Which budget a request draws from."""

    #: submit and check, per client IP
    SUBMIT = "submit"
    #: job status, per client IP
    STATUS = "status"
    #: available and heartbeat, per runner
    RUNNER = "runner"
    #: admin routes, per client IP
    ADMIN = "admin"
    #: runner registrations, per client IP
    REGISTER = "register"
    #: available and heartbeat, per client IP, whatever runner they name
    RUNNER_HOST = "runner_host"
    #: submit-batch, per client IP: a batch is one request
    BATCH = "batch"


#: A lease is this fraction of the limit.
LEASE_DIVISOR = 100
#: Leases kept before expired ones are swept.
MAX_LEASES = 10_000


@dataclass
class _Lease:
    remaining: int
    expires_at: float


class RateLimits:
    """One limiter over every category's budget."""

    def __init__(self, settings: RunpackSettings) -> None:
        self._items: dict[RateCategory, RateLimitItem] = {
            RateCategory.SUBMIT: parse(settings.rate_submit),
            RateCategory.STATUS: parse(settings.rate_status),
            RateCategory.RUNNER: parse(settings.rate_runner),
            RateCategory.ADMIN: parse(settings.rate_admin),
            RateCategory.REGISTER: parse(settings.rate_register),
            RateCategory.RUNNER_HOST: parse(settings.rate_runner_host),
            RateCategory.BATCH: parse(settings.rate_batch),
        }
        redis_url = settings.rate_limit_storage_url
        storage = (
            cast(Storage, storage_from_string(f"async+{redis_url}", implementation="redispy"))
            if redis_url
            else MemoryStorage()
        )
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._leasing = redis_url is not None
        self._leases: dict[tuple[RateCategory, str], _Lease] = {}
        #: One lease fetch at a time per budget: the others wait, then draw from it.
        self._fetching: dict[tuple[RateCategory, str], asyncio.Lock] = {}

    def _from_lease(self, key: tuple[RateCategory, str]) -> bool:
        lease = self._leases.get(key)
        if lease is None or lease.remaining <= 0 or lease.expires_at <= time.monotonic():
            return False
        lease.remaining -= 1
        return True

    async def _take(self, item: RateLimitItem, key: tuple[RateCategory, str]) -> bool:
        """Count this request in the store, leasing more when that pays."""
        category, identity = key
        size = self._lease_size(item)
        if size > 1 and await self._limiter.hit(item, category.value, identity, cost=size):
            if len(self._leases) >= MAX_LEASES:
                now = time.monotonic()
                self._leases = {k: v for k, v in self._leases.items() if v.expires_at > now}
            self._leases[key] = _Lease(size - 1, time.monotonic() + item.get_expiry())
            return True
        return bool(await self._limiter.hit(item, category.value, identity))

    def _lease_size(self, item: RateLimitItem) -> int:
        """How many requests one store hit covers for ``item``."""
        return max(1, item.amount // LEASE_DIVISOR) if self._leasing else 1

    async def _counted(self, item: RateLimitItem, key: tuple[RateCategory, str]) -> bool:
        """Whether the store lets this request through; with leases, one fetch at a time
        per budget, and a request that waited draws from the lease just fetched."""
        if self._lease_size(item) == 1:
            return await self._take(item, key)
        if len(self._fetching) >= MAX_LEASES:  # keep only the locks in use
            self._fetching = {k: v for k, v in self._fetching.items() if v.locked()}
        async with self._fetching.setdefault(key, asyncio.Lock()):
            return self._from_lease(key) or await self._take(item, key)

    async def hit(self, category: RateCategory, identity: str) -> None:
        """Count one request; raise RateLimited (with Retry-After) when over budget."""
        item = self._items[category]
        key = (category, identity)
        if self._from_lease(key):
            return
        try:
            if await self._counted(item, key):
                return
            stats = await self._limiter.get_window_stats(item, category.value, identity)
        except Exception:  # storage down: let the request through
            log.warning("rate limit storage unreachable; not limiting", exc_info=True)
            return
        retry_after_s = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(f"rate limit of {item} exceeded for {category.value}", retry_after_s)


def _trusted(address: str, proxies: list[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_ip(request: Request, proxies: list[IPNetwork]) -> str:
    """The socket peer, or the nearest untrusted hop of X-Forwarded-For behind a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _trusted(hop, proxies):
            return hop
    return peer
