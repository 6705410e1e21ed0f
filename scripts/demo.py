"""`make demo`: start both backends, play a scripted conversation through their public APIs,
print what each side stores (ids linked both ways), and exit 0 when it all arrived."""

from __future__ import annotations

import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from scripts.local_stack import Stack, free_port, local_stack, run_command


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll until `check` returns something truthy: delivery is asynchronous (the outbox)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise SystemExit(f"demo failed: {what} did not happen within {timeout:.0f} s")


def show(title: str, database: Path, query: str) -> None:
    print(f"\n{title}")
    with sqlite3.connect(database) as connection:
        cursor = connection.execute(query)
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    widths = [
        max(len(str(v)) for v in [name, *(row[i] for row in rows)]) for i, name in enumerate(names)
    ]
    print("  " + "  ".join(name.ljust(w) for name, w in zip(names, widths, strict=True)))
    for row in rows:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))


def hex_uuid(value: str) -> str:
    return uuid.UUID(value).hex  # SQLite stores UUIDs as 32 hex digits


def play(stack: Stack) -> None:
    token = run_command("crm", stack, "operators", "add", "Maria").splitlines()[-1].split(": ")[-1]
    user = {
        "Authorization": run_command(
            "tma", stack, "mint-initdata", "--header", "--first-name", "Anna"
        )
        .split(": ", 1)[1]
        .strip()
    }
    operator = {"Authorization": f"Bearer {token}"}
    tma, crm = httpx.Client(base_url=stack.tma_url), httpx.Client(base_url=stack.crm_url)

    print("1. Anna opens a ticket in the Mini App, with a screenshot attached")
    ticket_id = str(uuid.uuid4())
    opened = tma.post(
        "/api/support/tickets",
        headers=user,
        json={
            "id": ticket_id,
            "subject": "Payment did not go through",
            "message": "I paid for order 1042 but it still says unpaid.",
            "message_id": str(uuid.uuid4()),
            "attachments": [
                {
                    "url": "https://files.example.com/anna/receipt.png",
                    "file_name": "receipt.png",
                    "mime_type": "image/png",
                    "size": 48213,
                }
            ],
        },
    )
    opened.raise_for_status()

    def crm_ticket() -> dict[str, Any] | None:
        tickets = crm.get("/api/crm/tickets", headers=operator).json()
        return next((t for t in tickets if t["external_id"] == ticket_id), None)

    in_crm = wait_for("the ticket reaching the CRM", crm_ticket)
    crm_id = in_crm["id"]
    print(f"   the CRM has it as {crm_id}")

    print("2. Maria (operator) replies in the CRM")
    crm.post(
        f"/api/crm/tickets/{crm_id}/messages",
        headers=operator,
        json={"message": "Thanks Anna, I see the payment; marking the order paid now."},
    ).raise_for_status()

    def tma_messages() -> list[dict[str, Any]]:
        return list(tma.get(f"/api/support/tickets/{ticket_id}", headers=user).json()["messages"])

    wait_for("the reply reaching the Mini App", lambda: len(tma_messages()) == 2)
    print("3. Anna answers")
    tma.post(
        f"/api/support/tickets/{ticket_id}/messages",
        headers=user,
        json={"id": str(uuid.uuid4()), "message": "It shows paid now, thank you!"},
    ).raise_for_status()

    def crm_messages() -> list[dict[str, Any]]:
        return list(crm.get(f"/api/crm/tickets/{crm_id}", headers=operator).json()["messages"])

    wait_for("Anna's answer reaching the CRM", lambda: len(crm_messages()) == 3)
    print("4. Maria closes the ticket")
    crm.post(
        f"/api/crm/tickets/{crm_id}/status", headers=operator, json={"status": "closed"}
    ).raise_for_status()
    wait_for(
        "the status reaching the Mini App",
        lambda: (
            tma.get(f"/api/support/tickets/{ticket_id}", headers=user).json()["ticket"]["status"]
            == "closed"
        ),
    )
    wait_for(
        "every message acknowledged",
        lambda: (
            all(m["delivered"] for m in tma_messages())
            and all(m["external_message_id"] for m in crm_messages())
        ),
    )
    tma.close()
    crm.close()

    tma_db, crm_db = stack.data_dir / "tma.db", stack.data_dir / "crm.db"
    show(
        "TMA tickets (external_id = the CRM's id)",
        tma_db,
        "SELECT id, external_id, status, subject FROM tickets",
    )
    show(
        "CRM tickets (external_id = the TMA's id)",
        crm_db,
        "SELECT id, external_id, status, subject FROM tickets",
    )
    show(
        "TMA messages (external_message_id = the CRM's id)",
        tma_db,
        "SELECT id, external_message_id, sender_type, operator_name, substr(body, 1, 30) AS body "
        "FROM messages ORDER BY seq",
    )
    show(
        "CRM messages (external_message_id = the TMA's id)",
        crm_db,
        "SELECT id, external_message_id, sender_type, author_name, substr(body, 1, 30) AS body "
        "FROM messages ORDER BY seq",
    )
    with sqlite3.connect(tma_db) as t, sqlite3.connect(crm_db) as c:
        tma_links = set(t.execute("SELECT id, external_message_id FROM messages").fetchall())
        crm_links = {
            (ext, own)
            for own, ext in c.execute("SELECT id, external_message_id FROM messages").fetchall()
        }
        tickets_linked = t.execute("SELECT id, external_id FROM tickets").fetchone() == (
            hex_uuid(ticket_id),
            hex_uuid(crm_id),
        )
    if tma_links != crm_links or not tickets_linked:
        raise SystemExit("demo failed: the two sides' ids are not linked both ways")
    print("\nLinked both ways: every message and the ticket know each other's ids. Demo OK.")


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="tma-crm-demo-") as tmp,
        local_stack(Path(tmp), tma_port=free_port(), crm_port=free_port(), quiet=True) as stack,
    ):
        print(f"TMA on {stack.tma_url}, CRM on {stack.crm_url}, SQLite in {tmp}\n")
        play(stack)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
