"""Every command of both backends, against every way its database can be wrong, as a real
process: one line on stderr that says what to do, a non-zero exit, and no traceback unless
`--debug` asks for one.

The database can be: a PostgreSQL port nobody listens on, a URL of an unsupported kind, or a
database (SQLite, PostgreSQL) nobody migrated. The processes run a few at a time, since each one
imports the whole backend.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import sqlalchemy as sa

from integration_kit.db import Database
from tests.support.databases import POSTGRES_URL, empty_database, fresh_database

ROOT = Path(__file__).resolve().parents[2]

SHARED = [
    ("serve", "--port", "0"),
    ("serve", "--no-migrate", "--port", "0"),
    ("worker",),
    ("migrate",),
    ("outbox", "list"),
    ("outbox", "replay", "1"),
    ("outbox", "skip", "1", "--reason", "tried by hand"),
    ("outbox", "purge"),
]
COMMANDS = {
    "tma": [*SHARED, ("mint-initdata",)],
    "crm": [
        *SHARED,
        ("operators", "add", "Maria"),
        ("operators", "list"),
        ("operators", "revoke", str(uuid.uuid4())),
    ],
}
FAILURES = ["unreachable", "bad-scheme", "unmigrated-sqlite"] + (
    ["unmigrated-postgresql"] if POSTGRES_URL else []
)
NO_DATABASE_NEEDED = {("mint-initdata",)}
MIGRATES = {("migrate",), ("serve", "--port", "0")}  # these fix an unmigrated database


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


def _cases() -> list[tuple[str, str, tuple[str, ...]]]:
    cases = []
    for failure in FAILURES:
        for side, commands in COMMANDS.items():
            for command in commands:
                if failure.startswith("unmigrated") and command in MIGRATES:
                    continue  # migrating is what they do; their failures are the other kinds
                cases.append((failure, side, command))
    return cases


CASES = _cases()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def unmigrated_postgresql(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    if not POSTGRES_URL:
        yield ""
        return
    async with empty_database("postgresql", tmp_path_factory.mktemp("pg")) as url:
        yield url


@pytest.fixture(scope="module")
def database_urls(
    tmp_path_factory: pytest.TempPathFactory, unmigrated_postgresql: str
) -> Iterator[dict[str, str]]:
    folder = tmp_path_factory.mktemp("cli-failures")
    with socket.socket() as closed:
        # A loopback port that refuses connections: bound by us, never listening, so nothing
        # else can take it meanwhile.
        closed.bind(("127.0.0.1", 0))
        yield {
            "unreachable": f"postgresql://postgres@127.0.0.1:{closed.getsockname()[1]}/nowhere",
            "bad-scheme": "mysql://user:pw@127.0.0.1:3306/support",
            "unmigrated-sqlite": f"sqlite:///{folder / 'never-migrated.db'}",
            "unmigrated-postgresql": unmigrated_postgresql,
        }


def _env(side: str, database_url: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TMA_", "CRM_"))}
    prefix = side.upper()
    env.update(
        {
            f"{prefix}_DATABASE_URL": database_url,
            f"{prefix}_DATA_DIR": str(workdir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run(side: str, args: tuple[str, ...], database_url: str, workdir: Path) -> Run:
    try:
        done = subprocess.run(
            [sys.executable, "-m", f"{side}_impl", *args],
            cwd=workdir,  # no .env of the developer's is read
            env=_env(side, database_url, workdir),
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # a command that hangs instead of failing
        return Run(-1, str(exc.stdout), f"timed out after 90 s: {exc.stderr!s}")
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def results(
    database_urls: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str, tuple[str, ...]], Run]:
    """Every case's run, a few processes at a time."""
    workdir = tmp_path_factory.mktemp("cli-workdir")
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        futures = {
            case: pool.submit(run, case[1], case[2], database_urls[case[0]], workdir)
            for case in CASES
        }
        return {case: future.result() for case, future in futures.items()}


def _expected(failure: str, side: str, database_url: str) -> str:
    program = f"python -m {side}_impl"
    if failure == "unreachable":
        port = database_url.split(":")[2].split("/")[0]
        return (
            f"error: cannot reach the PostgreSQL database 127.0.0.1:{port}/nowhere "
            "(ConnectionRefusedError: connection refused): start the database server, or point "
            f"{side.upper()}_DATABASE_URL at a running one"
        )
    if failure == "bad-scheme":
        return (
            f"error: invalid settings: {side.upper()}_DATABASE_URL has an unsupported scheme "
            "'mysql': use sqlite:///path/to/file.db or postgresql://user@host:5432/database"
        )
    return f"error: the database has no tables yet: run `{program} migrate`"


@pytest.mark.parametrize(
    ("failure", "side", "command"), CASES, ids=[f"{f}-{s}-{'_'.join(c)}" for f, s, c in CASES]
)
def test_each_command_fails_in_one_line_that_says_what_to_do(
    results: dict[tuple[str, str, tuple[str, ...]], Run],
    database_urls: dict[str, str],
    failure: str,
    side: str,
    command: tuple[str, ...],
) -> None:
    result = results[failure, side, command]
    assert "Traceback" not in result.stderr
    if command in NO_DATABASE_NEEDED and failure != "bad-scheme":
        # initData needs no database: a database problem is none of its business.
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("auth_date=")
        return
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(_expected(failure, side, database_urls[failure])), lines[0]
    assert result.stdout == ""
    assert "pw@" not in result.stderr  # a URL's password is never repeated


def test_an_unmigrated_sqlite_file_is_not_created_by_a_command(
    results: dict[tuple[str, str, tuple[str, ...]], Run], database_urls: dict[str, str]
) -> None:
    """Looking at a database that is not there must not leave an empty one behind."""
    assert results  # every command above has run against it
    assert not Path(database_urls["unmigrated-sqlite"].split("///", 1)[1]).exists()


@pytest.mark.parametrize(
    "args",
    [("--debug", "worker"), ("worker", "--debug")],
    ids=["before-the-command", "after-the-command"],
)
def test_debug_shows_the_traceback_before_the_same_line(
    database_urls: dict[str, str], tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = run("tma", args, database_urls["unreachable"], tmp_path)
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "ConnectionRefusedError" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(_expected("unreachable", "tma", database_urls["unreachable"]))


async def test_a_database_migrated_by_newer_code_is_refused_in_one_line(
    db_kind: str, tmp_path: Path
) -> None:
    """A worker of an older release must not write into a schema it does not know."""
    async with fresh_database(db_kind, "tma", tmp_path) as url:
        db = Database(url)
        try:
            async with db.transaction() as session:
                await session.execute(sa.text("UPDATE alembic_version SET version_num = 'f00d'"))
        finally:
            await db.dispose()
        result = await asyncio.to_thread(run, "tma", ("worker",), url, tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: the ")
    assert "was migrated by a newer version of this code (revision f00d)" in line


def test_serve_refuses_a_port_in_use_in_one_line(tmp_path: Path) -> None:
    """Said before "listening", not logged by uvicorn after it."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        url = f"sqlite:///{tmp_path / 'c.db'}"
        result = run("crm", ("serve", "--port", str(port)), url, tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use): another process "
        "serves there (an earlier `make run`?); stop it, or choose another port with --port or "
        "CRM_PORT"
    )


def test_serve_on_port_zero_says_which_port_it_took(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tma_impl", "serve", "--port", "0"],
        cwd=tmp_path,
        env=_env("tma", f"sqlite:///{tmp_path / 't.db'}", tmp_path),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        port = int(line.rsplit(":", 1)[1])
        assert line == f"tma: listening on http://127.0.0.1:{port}\n"
        assert port != 0
        with socket.create_connection(("127.0.0.1", port), timeout=30):
            pass  # it is this process that listens there
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.mark.skipif(not POSTGRES_URL, reason="needs TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize(
    ("user", "database", "says"),
    [
        (
            "postgres",
            "ops_never_created",
            'does not exist (database "ops_never_created" does not exist): create it',
        ),
        (
            "ops_nobody",
            "postgres",
            'refused the login (role "ops_nobody" does not exist): fix the user or password in '
            "TMA_DATABASE_URL",
        ),
    ],
    ids=["no-such-database", "no-such-user"],
)
def test_a_server_that_refuses_the_database_or_the_user_is_one_line(
    tmp_path: Path, user: str, database: str, says: str
) -> None:
    server = sa.engine.make_url(POSTGRES_URL)
    url = server.set(username=user, database=database).render_as_string(hide_password=False)
    result = run("tma", ("outbox", "list"), url, tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: the PostgreSQL database ")
    assert says in line
