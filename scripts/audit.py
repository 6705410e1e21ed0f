"""`make audit`: pip-audit on the pinned dependencies (requirements.lock), told in one line.

Exit 0: every pin was checked and none has a known vulnerability. Exit 1: known vulnerabilities
(pip-audit's table says which, and the fixed versions). Exit 2: the audit could not be done, for
instance because the vulnerability service does not answer: that is said plainly and is never a
pass. `--strict` makes a package the service could not look up a failure rather than a silent
skip. Extra arguments go to pip-audit (`make audit AUDIT_ARGS="-s osv"` asks OSV instead of
PyPI).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
PIP_AUDIT = Path(sys.executable).parent / "pip-audit"

# What pip-audit says when its service could not answer for a package (PyPI's JSON API, OSV).
NOT_LOOKED_UP = re.compile(r"ERROR:pip_audit\._cli:(?:[\w.-]+: )?(.+could not be audited.*)")
UNREACHABLE = (
    "ConnectionError",
    "ConnectTimeout",
    "Max retries exceeded",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Connection refused",
    "Could not connect",
    "ServiceError",
    "HTTPError",
)


def pinned_packages() -> int:
    return sum(1 for line in LOCK.read_text().splitlines() if "==" in line)


def main(extra: list[str]) -> int:
    command = [
        str(PIP_AUDIT),
        "--requirement",
        str(LOCK),
        # Every pin is exact (pip freeze): audit exactly those, without installing anything.
        "--no-deps",
        "--disable-pip",
        "--strict",
        "--progress-spinner",
        "off",
        *extra,
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        print(result.stdout.strip())
        pins = pinned_packages()
        print(f"audit: no known vulnerabilities in the {pins} pins of requirements.lock")
        return 0
    errors = result.stderr
    missed = NOT_LOOKED_UP.search(errors)
    if missed or any(marker in errors for marker in UNREACHABLE):
        why = missed.group(1) if missed else _last_line(errors)
        print(
            "error: pip-audit could not get answers from its vulnerability service "
            f"({why}); nothing was audited, which is not a pass: run `make audit` where the "
            "service is reachable, or choose another with AUDIT_ARGS='-s osv'",
            file=sys.stderr,
        )
        return 2
    found = re.search(r"Found \d+ known vulnerabilit\w+ in \d+ packages?", errors)
    if found:
        print(result.stdout.strip())
        print(f"audit: {found.group(0)} (above): upgrade those pins", file=sys.stderr)
        return 1
    print(f"error: pip-audit failed: {_last_line(errors or result.stdout)}", file=sys.stderr)
    return 2


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
