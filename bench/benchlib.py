"""Pieces the benchmarks share: fresh PostgreSQL databases, child environments, memory
readings and Markdown tables. Imported by the scripts of this directory only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import URL, make_url

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
BENCH_SECRET = "bench-" + "x" * 40  # the JWT secret of every benchmarked service


def bench_settings(database_url: str, data_dir: Path, **overrides: Any) -> Any:
    """The service's settings for a benchmark: these values only, no environment file."""
    from app.core.config import Settings  # imported when used: the benchmarks import benchlib first

    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        data_dir=data_dir,
        jwt_secret=BENCH_SECRET,
        **overrides,
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank `fraction` percentile of `values` (not empty)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def _on_maintenance_db(server: URL, statement: str) -> None:
    connection = await asyncpg.connect(
        host=server.host or "127.0.0.1",
        port=server.port or 5432,
        user=server.username or "postgres",
        password=server.password,
        database="postgres",
        timeout=5,
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def postgres_unreachable(server: URL) -> str | None:
    """Why the PostgreSQL server of `server` cannot be used, or None when it answers."""
    try:
        asyncio.run(_on_maintenance_db(server, "SELECT 1"))
    except Exception as exc:  # whatever the reason, the caller skips PostgreSQL
        return f"{type(exc).__name__}: {exc}"
    return None


def databases_to_measure(choice: str, pg_server: URL) -> tuple[list[str], list[str]]:
    """The databases a benchmark measures for `--db choice`, and notes for its output.

    With `both`, an unreachable PostgreSQL is skipped with a note; asked for alone, it ends
    the benchmark with the reason (exit status 1).
    """
    databases = ["sqlite", "postgresql"] if choice == "both" else [choice]
    notes: list[str] = []
    if "postgresql" in databases and (reason := postgres_unreachable(pg_server)):
        where = pg_server.render_as_string(hide_password=True)
        if choice == "postgresql":
            raise SystemExit(f"PostgreSQL at {where} is unreachable: {reason}")
        databases.remove("postgresql")
        notes.append(f"PostgreSQL skipped: {where} is unreachable ({reason}).")
    return databases, notes


@contextlib.contextmanager
def postgres_database(server: URL, prefix: str) -> Iterator[str]:
    """A new, empty database on `server`, dropped afterwards whatever happens."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_on_maintenance_db(server, f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_on_maintenance_db(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def postgres_backends_cpu(database: str) -> dict[int, float] | None:
    """CPU seconds (user + system) of each PostgreSQL backend process on this machine that
    is connected to `database`, by pid; None where /proc cannot tell (not Linux).

    Backends are found by their process title (`postgres: [cluster: ]user database host
    state`), so only a server on this machine is seen, and only while it runs as a user
    whose /proc entries this process may read."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    backends: dict[int, float] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
            if not title.startswith("postgres: ") or database not in title.split():
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile, or is not ours to read
            continue
        backends[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return backends


def child_environment() -> dict[str, str]:
    """The environment of a child: none of the developer's service settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    return {name: value for name, value in os.environ.items() if name in keep}


def peak_rss_kib() -> int:
    """This process's peak resident set size so far, in KiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def current_rss_kib(pid: int | None = None) -> int:
    """The resident set size of `pid` (default: this process) now, in KiB.

    Reads /proc; where it is missing, falls back to this process's peak.
    """
    try:
        fields = Path(f"/proc/{pid or 'self'}/statm").read_text().split()
    except OSError:
        if pid is not None:
            raise
        return peak_rss_kib()
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process `pid` has used so far, from /proc/<pid>/stat.

    Raises OSError where /proc is missing (not Linux) or the process is gone.
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    # the command name (field 2) may hold spaces: count fields after its closing parenthesis
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def format_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 2
) -> str:
    """A Markdown table whose columns line up in plain text too.

    The first `text_columns` columns are left-aligned, the others (numbers) right-aligned.
    """
    widths = [max(len(cells[i]) for cells in (columns, *rows)) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if i < text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    dashes = [
        "-" * (w + 2) if i < text_columns else "-" * (w + 1) + ":" for i, w in enumerate(widths)
    ]
    rule = "|" + "|".join(dashes) + "|"
    return "\n".join([line(columns), rule, *(line(row) for row in rows)])


async def timed(repeat: int, operation: Callable[[], Awaitable[Any]]) -> tuple[float, float, float]:
    """Median and slowest wall ms, and median CPU ms, of `repeat` calls (after one call
    that warms the caches and the statement cache)."""
    await operation()
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        await operation()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return statistics.median(walls), max(walls), statistics.median(cpus)


RESULT_COLUMNS = ["db", "operation", "p50 ms", "max ms", "CPU ms", "goal"]


def measure_each_database(
    db_choice: str,
    pg_url: str,
    prefix: str,
    measure: Callable[[str, str, Path], Awaitable[list[list[str]]]],
) -> int:
    """Run `measure(db, database_url, data_dir)` on a fresh SQLite file and a fresh
    PostgreSQL database (as `--db` chooses), then print its rows as one table."""
    pg_server = make_url(pg_url)
    databases, notes = databases_to_measure(db_choice, pg_server)
    table: list[list[str]] = []
    for db in databases:
        with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
            if db == "sqlite":
                url = f"sqlite+aiosqlite:///{tmp}/bench.db"
                table += asyncio.run(measure(db, url, Path(tmp)))
            else:
                with postgres_database(pg_server, prefix.replace("-", "_")) as url:
                    table += asyncio.run(measure(db, url, Path(tmp)))
    print(format_table(RESULT_COLUMNS, table))
    for note in notes:
        print(note)
    return 0


class ChildProcess:
    """A service process a bench started (`process`): its CPU so far, and a stop that
    waits for its drain (killing it after 20 s)."""

    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float | None:
        """CPU time the process has used so far; None where /proc cannot tell."""
        try:
            return cpu_seconds(self.process.pid)
        except (OSError, IndexError, ValueError):
            return None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
