"""Rate limits per client IP, behind trusted proxies, and shared by API servers via Redis."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runpack_api.ratelimit import RateCategory, RateLimits
from runpack_tasks.errors import RateLimited
from runpack_tasks.settings import get_settings
from tests.support import (
    IN_CI,
    ApiServer,
    Backend,
    postgres_backend,
    serving_in_process,
    unique_params,
)

LIMITS = {"RUNPACK_RATE_SUBMIT": "3/minute", "RUNPACK_RATE_STATUS": "3/minute"}


def random_loopback() -> str:
    """A loopback source address no earlier run used, so old counters cannot interfere."""
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


def client_from(server: ApiServer, source: str, **headers: str) -> httpx.Client:
    return server.client("submit", source=source, headers=headers)


def check(client: httpx.Client) -> httpx.Response:
    return client.post("/api/jobs/check", json={"job_type": "x", "input_params": unique_params()})


@pytest.fixture(scope="module")
def limited(
    backend: Backend, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    extra = {**LIMITS, "RUNPACK_TRUSTED_PROXIES": "127.0.0.77"}
    with serving_in_process(
        module_database_url, backend, tmp_path_factory.mktemp("rl"), extra
    ) as server:
        yield server


def test_over_the_limit_gets_429_with_retry_after(limited: ApiServer) -> None:
    with client_from(limited, random_loopback()) as client:
        codes = [check(client).status_code for _ in range(3)]
        refused = check(client)
    assert codes == [200, 200, 200]
    assert refused.status_code == 429
    assert "error" in refused.json() and "rate limit" in refused.json()["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_each_client_ip_has_its_own_budget(limited: ApiServer) -> None:
    with client_from(limited, random_loopback()) as first:
        for _ in range(4):
            check(first)
        assert check(first).status_code == 429
    with client_from(limited, random_loopback()) as second:
        assert check(second).status_code == 200


def test_submit_and_status_budgets_are_separate(limited: ApiServer) -> None:
    with client_from(limited, random_loopback()) as client:
        for _ in range(3):
            check(client)
        assert check(client).status_code == 429
        assert client.get("/api/jobs/unknown").status_code == 404  # status budget untouched


def test_cached_answers_count_against_the_limit(limited: ApiServer) -> None:
    # Given a completed job
    params = unique_params()
    with client_from(limited, random_loopback()) as client:
        job_id = client.post("/api/jobs/submit", json={"job_type": "rl", "input_params": params})
        job_id = job_id.json()["job_id"]
    with limited.client("runner") as runner:
        runner_id = runner.post(
            "/api/runner/register", json={"name": "rl", "capabilities": ["rl"]}
        ).json()["runner_id"]
    with limited.client("runner", runner_id) as runner:
        runner.post(f"/api/runner/jobs/{job_id}/claim")
        runner.post(f"/api/runner/jobs/{job_id}/complete", json={"output_data": {}})
    # When one client asks for it again and again, from the cache
    with client_from(limited, random_loopback()) as client:
        codes = [
            client.post(
                "/api/jobs/submit", json={"job_type": "rl", "input_params": params}
            ).status_code
            for _ in range(4)
        ]
    # Then the fourth request within the minute is refused all the same
    assert codes == [200, 200, 200, 429]


def test_forwarded_for_counts_only_behind_a_trusted_proxy(limited: ApiServer) -> None:
    # Given the trusted proxy 127.0.0.77 relaying two different clients
    with client_from(limited, "127.0.0.77", **{"X-Forwarded-For": random_loopback()}) as one:
        assert [check(one).status_code for _ in range(4)] == [200, 200, 200, 429]
    with client_from(limited, "127.0.0.77", **{"X-Forwarded-For": random_loopback()}) as two:
        assert check(two).status_code == 200
    # And an untrusted peer cannot dodge its budget by forging the header
    source = random_loopback()
    codes = []
    for _ in range(4):
        with client_from(limited, source, **{"X-Forwarded-For": random_loopback()}) as forged:
            codes.append(check(forged).status_code)
    assert codes == [200, 200, 200, 429]


def test_api_servers_share_counters_through_redis(tmp_path: Path) -> None:
    backend = postgres_backend()
    if backend is None:
        if IN_CI:
            pytest.fail("RUNPACK_TEST_DATABASE_URL / RUNPACK_TEST_REDIS_URL must be set in CI")
        pytest.skip("needs PostgreSQL + Redis")
    # Given two API servers with their own limiters, sharing one database and Redis
    with (
        backend.fresh_database(tmp_path) as url,
        serving_in_process(url, backend, tmp_path, LIMITS) as first,
        serving_in_process(url, backend, tmp_path, LIMITS) as second,
    ):
        # When one client spends two requests at each
        source = random_loopback()
        with client_from(first, source) as one:
            assert [check(one).status_code for _ in range(2)] == [200, 200]
        # Then the second server refuses the fourth: the budget of 3 is shared
        with client_from(second, source) as two:
            assert [check(two).status_code for _ in range(2)] == [200, 429]


def test_leases_keep_processes_within_the_limit_with_few_redis_calls() -> None:
    backend = postgres_backend()
    if backend is None:
        if IN_CI:
            pytest.fail("RUNPACK_TEST_REDIS_URL must be set in CI")
        pytest.skip("needs Redis")
    # Given two API processes' limiters sharing Redis, with a limit of 1000 a minute
    settings = get_settings(redis_url=backend.redis_url, rate_submit="1000/minute")
    limiters = [RateLimits(settings), RateLimits(settings)]
    calls = [0]
    for limiter in limiters:
        original = limiter._limiter.hit

        async def counted(*args: Any, _original: Any = original, **kwargs: Any) -> bool:
            calls[0] += 1
            return bool(await _original(*args, **kwargs))

        limiter._limiter.hit = counted  # type: ignore[method-assign]
    identity = random_loopback()

    async def hammer(requests: int) -> int:
        allowed = 0
        for n in range(requests):
            try:
                await limiters[n % 2].hit(RateCategory.SUBMIT, identity)
                allowed += 1
            except RateLimited:
                pass
        return allowed

    # When they serve 900 requests, then 300 more
    lease = 1000 // 100
    assert asyncio.run(hammer(900)) == 900
    # Then Redis was asked about once per lease, not once per request
    assert calls[0] <= 900 // lease + 2
    # And together they never let more than the limit through, nor refuse much before it
    allowed = 900 + asyncio.run(hammer(300))
    assert 1000 - 2 * (lease - 1) <= allowed <= 1000


def test_a_burst_of_first_requests_stays_within_the_limit() -> None:
    backend = postgres_backend()
    if backend is None:
        if IN_CI:
            pytest.fail("RUNPACK_TEST_REDIS_URL must be set in CI")
        pytest.skip("needs Redis")
    # Given one API server's limiter on Redis, with 1000 a minute (leases of 10)
    limiter = RateLimits(get_settings(redis_url=backend.redis_url, rate_submit="1000/minute"))
    identity = random_loopback()

    async def allowed(concurrently: int, then: int) -> int:
        async def one() -> bool:
            try:
                await limiter.hit(RateCategory.SUBMIT, identity)
            except RateLimited:
                return False
            return True

        burst = await asyncio.gather(*(one() for _ in range(concurrently)))
        return sum(burst) + sum([await one() for _ in range(then)])

    # When 100 requests of one client arrive at once, before any lease is held, then 100 more
    # Then all 200 are let through: well within 1000 a minute
    assert asyncio.run(allowed(100, 100)) == 200
