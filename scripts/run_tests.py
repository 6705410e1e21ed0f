"""Run the test suite the way `make test` and CI do.

pytest's exit code 5 (no tests collected) is a failure here. Without TEST_DATABASE_URL the
PostgreSQL half of the suite is skipped, and this says so plainly instead of passing quietly; so
are the Redis tests when Redis (TEST_REDIS_URL, default redis://127.0.0.1:6379/0) does not answer,
except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def main() -> int:
    postgres = os.environ.get("TEST_DATABASE_URL", "")
    if postgres:
        print(f"PostgreSQL tests: on ({postgres.split('@')[-1]})")
    else:
        print("PostgreSQL tests: SKIPPED (TEST_DATABASE_URL is not set; SQLite only)")
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    redis_up = _redis_answers(redis_url)
    in_ci = os.environ.get("CI", "").lower() == "true"
    if redis_up:
        print(f"Redis tests: on ({redis_url.split('@')[-1]})")
    elif in_ci:
        print(f"Redis tests: FAIL (CI=true and Redis is not answering at {redis_url})")
    else:
        print(f"Redis tests: SKIPPED (Redis is not answering at {redis_url})")
    browser = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if browser:
        print(f"Browser tests: on ({browser})")
    else:
        print("Browser tests: SKIPPED (chromium not found: apt-get install -y chromium)")
    code = subprocess.call([sys.executable, "-m", "pytest", *sys.argv[1:]])
    if code == 5:
        print("pytest collected no tests: that is a failure", file=sys.stderr)
        return 1
    if not postgres:
        print(
            "NOTE: the PostgreSQL part of the suite was skipped (set TEST_DATABASE_URL to run it)."
        )
    if not redis_up and not in_ci:
        print("NOTE: the Redis rate-limit tests were skipped (start Redis or set TEST_REDIS_URL).")
    if not browser:
        print("NOTE: the browser tests were skipped (install chromium to run them).")
    return code


def _redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


if __name__ == "__main__":
    raise SystemExit(main())
