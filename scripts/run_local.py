"""`make run`: serve both backends on loopback with SQLite and their dispatchers until Ctrl-C."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from scripts.local_stack import ROOT, local_stack, run_command


def main() -> int:
    tma_port = int(os.environ.get("TMA_PORT", "8000"))
    crm_port = int(os.environ.get("CRM_PORT", "8001"))
    data_dir = Path(os.environ.get("DATA_DIR", ROOT / "data"))
    with local_stack(data_dir, tma_port=tma_port, crm_port=crm_port) as stack:
        token = run_command("crm", stack, "operators", "add", "Demo operator").splitlines()[-1]
        init_data = run_command("tma", stack, "mint-initdata", "--header").strip()
        print(
            f"\nOperator console:        {stack.crm_url}/console/  (sign in with the token below)\n"
            f"TMA (Mini App support) listens on {stack.tma_url}\n"
            f"CRM (helpdesk)           listens on {stack.crm_url}\n"
            f"Data (SQLite):           {data_dir}\n\n"
            f"An operator was created for you; {token.split(': ', 1)[0]}:\n"
            f"  {token.split(': ', 1)[-1]}\n"
            "A Mini App user's header (valid 24 h):\n"
            f"  {init_data[:60]}...\n"
            "  (.venv/bin/python -m tma_impl mint-initdata --header prints it whole)\n\n"
            'The README ("Try it by hand") has curl commands for both APIs.\n'
            "Ctrl-C stops both.",
            flush=True,
        )
        try:
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
