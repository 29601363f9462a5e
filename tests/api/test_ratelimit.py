"""Rate limits per client IP, behind trusted proxies, and shared by API processes via Redis."""

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
    Backend,
    ServerProcess,
    postgres_backend,
    running_server,
    unique_params,
)

LIMITS = {"RUNPACK_RATE_SUBMIT": "3/minute", "RUNPACK_RATE_STATUS": "3/minute"}


def random_loopback() -> str:
    """A loopback source address no earlier run used, so old counters cannot interfere."""
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


def client_from(server: ServerProcess, source: str, **headers: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(
        base_url=server.url,
        transport=transport,
        timeout=30,
        headers={**server.headers("submit"), **headers},
    )


def check(client: httpx.Client) -> httpx.Response:
    return client.post("/api/jobs/check", json={"job_type": "x", "input_params": unique_params()})


@pytest.fixture(scope="module")
def limited(
    backend: Backend, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    extra = {**LIMITS, "RUNPACK_TRUSTED_PROXIES": "127.0.0.77"}
    with running_server(
        module_database_url, backend, tmp_path_factory.mktemp("rl"), extra
    ) as server:
        yield server


def test_over_the_limit_gets_429_with_retry_after(limited: ServerProcess) -> None:
    with client_from(limited, random_loopback()) as client:
        codes = [check(client).status_code for _ in range(3)]
        refused = check(client)
    assert codes == [200, 200, 200]
    assert refused.status_code == 429
    assert "error" in refused.json() and "rate limit" in refused.json()["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_each_client_ip_has_its_own_budget(limited: ServerProcess) -> None:
    with client_from(limited, random_loopback()) as first:
        for _ in range(4):
            check(first)
        assert check(first).status_code == 429
    with client_from(limited, random_loopback()) as second:
        assert check(second).status_code == 200


def test_submit_and_status_budgets_are_separate(limited: ServerProcess) -> None:
    with client_from(limited, random_loopback()) as client:
        for _ in range(3):
            check(client)
        assert check(client).status_code == 429
        assert client.get("/api/jobs/unknown").status_code == 404  # status budget untouched


def test_cached_answers_count_against_the_limit(limited: ServerProcess) -> None:
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


def test_forwarded_for_counts_only_behind_a_trusted_proxy(limited: ServerProcess) -> None:
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


def test_api_processes_share_counters_through_redis(tmp_path: Path) -> None:
    backend = postgres_backend()
    if backend is None:
        if IN_CI:
            pytest.fail("RUNPACK_TEST_DATABASE_URL / RUNPACK_TEST_REDIS_URL must be set in CI")
        pytest.skip("needs PostgreSQL + Redis")
    with (
        backend.fresh_database(tmp_path) as url,
        running_server(url, backend, tmp_path, LIMITS) as first,
        running_server(url, backend, tmp_path, LIMITS) as second,
    ):
        source = random_loopback()
        with client_from(first, source) as one:
            assert [check(one).status_code for _ in range(2)] == [200, 200]
        with httpx.Client(
            base_url=second.url,
            timeout=30,
            transport=httpx.HTTPTransport(local_address=source),
            headers=second.headers("submit"),
        ) as two:
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
