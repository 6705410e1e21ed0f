"""Rate limits in Redis: two API processes share one budget; Redis going away mid-run fails open
and coming back restores the limits. Needs Redis (tests/support/redis.py says what happens when it
does not answer: skipped locally, failed in CI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from integration_kit.clock import SystemClock
from integration_kit.problems import RATE_LIMITED
from integration_kit.signing import SigningTransport
from integration_kit.throttle import token_fingerprint
from tests.integration_kit.test_health import metric_values
from tests.integration_kit.test_rate_limits import PairFactory, assert_rate_limited, pair_with
from tests.support.redis import delete_prefix, free_port, own_redis, require_redis, unique_prefix

__all__ = ["pair_with"]  # the fixture, shared with test_rate_limits.py

TOKEN = "redis-test-tma-to-crm-token"
STARTUP_SECONDS = 60.0


SIGNING_SECRET = "whsec_dGVzdCByYXRlIGxpbWl0czogdG1hLXRvLWNybSBzZWNyZXQ="


def crm_env(tmp_path: Path, *, redis_url: str, prefix: str, limit: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TMA_", "CRM_"))}
    env.update(
        {
            "CRM_DATA_DIR": str(tmp_path),
            "CRM_INBOUND_TOKENS": TOKEN,
            "CRM_INBOUND_SIGNING_SECRETS": SIGNING_SECRET,
            "CRM_PEER_URL": f"http://127.0.0.1:{free_port()}",  # never called: no dispatcher
            "CRM_RATE_LIMIT_STORAGE_URL": redis_url,
            "CRM_RATE_LIMIT_KEY_PREFIX": prefix,
            "CRM_INTEGRATION_RATE_LIMIT": limit,
        }
    )
    return env


@contextlib.contextmanager
def crm_processes(tmp_path: Path, env: dict[str, str], count: int) -> Iterator[list[str]]:
    """`count` CRM API processes (`serve --no-dispatcher`) on one SQLite file; their base URLs."""
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for n in range(count):
            port = free_port()
            command = [sys.executable, "-m", "crm_impl", "serve", "--port", str(port)]
            # The first migrates the shared file; the others start on the migrated schema.
            command += ["--no-dispatcher"] + (["--no-migrate"] if n else [])
            with (tmp_path / f"crm-{n}.log").open("wb") as log:  # the child keeps its copy
                processes.append(
                    subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log)
                )
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, processes[-1], tmp_path / f"crm-{n}.log")
            urls.append(url)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the CRM exited: {log.read_text()}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"the CRM at {url} was not ready within {STARTUP_SECONDS} s")


async def test_two_api_processes_share_one_budget_in_redis(tmp_path: Path) -> None:
    redis_url = require_redis()
    prefix, limit, sent = unique_prefix(), 7, 24
    env = crm_env(tmp_path, redis_url=redis_url, prefix=prefix, limit=f"{limit}/hour")
    status = {
        "external_ticket_id": str(uuid.uuid4()),
        "status": "closed",
        "changed_at": "2026-12-01T12:00:00+00:00",
    }
    try:
        with crm_processes(tmp_path, env, 2) as urls:
            # Signed as the TMA signs (docs/delivery.md): the limit counts accepted requests only.
            signing = SigningTransport(
                httpx.AsyncHTTPTransport(), secret=lambda: SIGNING_SECRET, clock=SystemClock()
            )
            async with httpx.AsyncClient(
                headers={"Authorization": f"Bearer {TOKEN}"}, transport=signing
            ) as client:
                # All at once, spread over both processes: the count must hold under races too.
                responses = await asyncio.gather(
                    *(
                        client.post(f"{urls[n % 2]}/api/integration/status", json=status)
                        for n in range(sent)
                    )
                )
                metrics = [metric_values((await client.get(f"{u}/metrics")).text) for u in urls]
        statuses = [r.status_code for r in responses]
        assert statuses.count(404) == limit, statuses  # served (no such ticket): the budget
        assert statuses.count(429) == sent - limit, statuses
        for response in responses:
            if response.status_code == 429:
                assert_rate_limited(response, at_most=3600)
        # Both processes refused some: the budget is shared, not split or doubled.
        limited = [m["rate_limited_total{scope=integration}"] for m in metrics]
        assert sum(limited) == sent - limit
        assert all(m["rate_limit_storage_up"] == 1 for m in metrics)
    finally:
        keys = delete_prefix(redis_url, prefix)
    # The budget is stored under the token's fingerprint, never the token itself.
    assert keys
    assert all(token_fingerprint(TOKEN) in key and TOKEN not in key for key in keys)


async def test_redis_going_away_mid_run_fails_open_and_its_return_restores_the_limits(
    pair_with: PairFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="integration_kit.ratelimit")
    with own_redis() as server:
        settings = {
            "user_rate_limit": "3/hour",
            "integration_rate_limit": "",  # only the user API's budget is in play here
            "rate_limit_storage_url": server.url,
            "rate_limit_key_prefix": unique_prefix(),
        }
        async with pair_with(**settings) as pair:
            headers = pair.user_headers()

            async def status() -> int:
                response = await pair.tma.get("/api/support/tickets", headers=headers)
                return response.status_code

            assert [await status() for _ in range(4)] == [200, 200, 200, 429]

            server.stop()
            assert [await status() for _ in range(30)] == [200] * 30
            metrics = metric_values((await pair.tma.get("/metrics")).text)
            assert metrics["rate_limit_storage_up"] == 0
            assert metrics["rate_limit_unchecked_total"] >= 30
            outage = [r.getMessage() for r in caplog.records]
            assert len(outage) == 1
            assert "unreachable" in outage[0]

            server.start()  # empty: a Redis restarted without persistence
            limiter = pair.tma_runtime.limiter
            deadline = time.monotonic() + 10
            while not limiter.stats.storage_up:
                assert time.monotonic() < deadline, "the limiter did not use Redis again"
                assert await status() == 200
                await asyncio.sleep(0.05)
            # Counting again: the fresh window allows 3, the first of them spent on the
            # request that found Redis back.
            assert [await status() for _ in range(3)] == [200, 200, 429]
            body = (await pair.tma.get("/api/support/tickets", headers=headers)).json()
            assert body["type"] == RATE_LIMITED
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "answers again" in messages[1]
