"""Run the test suite the way `make test` and CI do.

pytest's exit code 5 (no tests collected) is a failure here. Without TEST_DATABASE_URL the
PostgreSQL half of the suite is skipped, and this says so plainly instead of passing quietly.
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
    if not browser:
        print("NOTE: the browser tests were skipped (install chromium to run them).")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
