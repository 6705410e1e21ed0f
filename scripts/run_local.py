"""`make run`: serve both backends on loopback with SQLite and their dispatchers until Ctrl-C.

TMA_PORT (8000), CRM_PORT (8001) and DATA_DIR (./data) choose where; a port already taken is
refused in one line. The development operator is made on the first start and reused after: its
token is kept in <DATA_DIR>/dev-operator.token.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from scripts.local_stack import ROOT, Stack, local_stack, run_command

OPERATOR_NAME = "Demo operator"
OPERATOR_FILE = "dev-operator.token"


def _port(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SystemExit(f"error: {name}={value!r} is not a port number (1-65535)")
    return int(value)


def development_operator(stack: Stack) -> tuple[str, bool]:
    """The development operator's token, and whether it was made just now: the one kept in the
    data folder while the CRM still accepts it, else a new operator."""
    kept = stack.data_dir / OPERATOR_FILE
    if kept.exists():
        token = kept.read_text().strip()
        answer = httpx.get(
            f"{stack.crm_url}/api/crm/me", headers={"Authorization": f"Bearer {token}"}
        )
        if answer.status_code == 200:
            return token, False
    output = run_command("crm", stack, "operators", "add", OPERATOR_NAME)
    token = output.strip().splitlines()[-1].rsplit(": ", 1)[-1]
    kept.touch(mode=0o600)  # a credential, if only a development one
    kept.write_text(token + "\n")
    return token, True


def main() -> int:
    tma_port, crm_port = _port("TMA_PORT", 8000), _port("CRM_PORT", 8001)
    data_dir = Path(os.environ.get("DATA_DIR", ROOT / "data"))
    with local_stack(data_dir, tma_port=tma_port, crm_port=crm_port) as stack:
        token, made = development_operator(stack)
        init_data = run_command("tma", stack, "mint-initdata", "--header").strip()
        # From here on, a stop (Ctrl-C, SIGTERM) is a graceful shutdown, even one that comes
        # as soon as the line saying how to stop is out.
        try:
            print(
                f"\nMini App (customers):    {stack.tma_url}/app/\n"
                "  (outside Telegram it signs you in as a development user)\n"
                f"Operator console:        {stack.crm_url}/console/\n"
                "  (sign in with the operator token below)\n"
                f"\nTMA (Mini App support) listens on {stack.tma_url}\n"
                f"CRM (helpdesk)           listens on {stack.crm_url}\n"
                f"Data (SQLite):           {data_dir}\n\n"
                f"{'An operator was created for you' if made else 'Your operator, as before'} "
                f"({OPERATOR_NAME}; token kept in {data_dir / OPERATOR_FILE}):\n"
                f"  {token}\n"
                "A Mini App user's header (valid 24 h):\n"
                f"  {init_data[:60]}...\n"
                "  (.venv/bin/python -m tma_impl mint-initdata --header prints it whole)\n\n"
                'The README ("Try it by hand") has curl commands for both APIs.\n'
                "Ctrl-C stops both.",
                flush=True,
            )
            while True:
                signal.pause()
        except KeyboardInterrupt:
            # One stop is enough: a second Ctrl-C must not cut the graceful shutdown short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("\nstopping both backends", flush=True)
    return 0


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    raise SystemExit(main())
