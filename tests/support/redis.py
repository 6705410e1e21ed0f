"""Redis for the tests that need it: TEST_REDIS_URL (default redis://127.0.0.1:6379/0).

A Redis that does not answer skips those tests with a message saying so, as the PostgreSQL half of
the suite is skipped without TEST_DATABASE_URL; in CI (CI=true) it fails them instead, so they
never drop out silently there. `.ci/run` starts Redis when it is not answering.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import redis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


def redis_answers(url: str = REDIS_URL) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def require_redis() -> str:
    """The Redis URL, once it answers; skip (locally) or fail (CI) when it does not."""
    if redis_answers():
        return REDIS_URL
    message = (
        f"Redis is not answering at {REDIS_URL}: start it (redis-server) or set TEST_REDIS_URL"
    )
    if IN_CI:
        pytest.fail(f"{message}; CI requires it", pytrace=False)
    pytest.skip(f"{message}; the Redis rate-limit tests are skipped")


def unique_prefix() -> str:
    """A key prefix per test, so runs sharing one Redis never see each other's counters."""
    return f"ratelimit-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def delete_prefix(url: str, prefix: str) -> list[str]:
    """Delete every key under `prefix`; returns the keys that were there."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        keys = [str(key) for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            client.delete(*keys)
        return keys
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OwnRedis:
    """A redis-server of the test's own on an ephemeral port, to stop and start at will."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not redis_answers(self.url):
            assert self.process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@contextmanager
def own_redis() -> Iterator[OwnRedis]:
    """Skipped (locally) or failed (CI) when redis-server is not installed."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed; the Redis outage test is skipped"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = OwnRedis(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
