"""Benchmark: what an HTTP request to the service costs, next to a bare FastAPI app.

Named `http_requests.py`, not `http.py`: Python puts a script's directory first on its
path, and a `bench/http.py` would stand in for the standard library's `http` package.

What it measures
----------------
In one run, real uvicorn processes: a bare FastAPI app answering a fixed JSON body (the
peer), and `collection-api serve` of this checkout on a fresh database (an SQLite file,
and a PostgreSQL database created on `--pg-url` and dropped afterwards, when the server
answers). The service is seeded through its own API the way a team uses it: an
organization and its admin (`collection-api bootstrap`), `--presets` presets, the
schedule, `--runs` small completed runs and one larger completed run (two categories of
the offline sample providers, 50 products each, 20 listings per product).

A second peer is the floor of a request that reads the database: FastAPI answering the
default schedule's row read by one query straight through the driver (aiosqlite, asyncpg),
with no authentication, session, ORM or response model, on the same seeded database. The
notes give each read's share of it: what this service's own layers cost on top.

Each endpoint is loaded with `wrk -t1 -c32 -d<--seconds>` (after a warm-up of one
second) as the admin, with the bearer token of the bootstrap: `/health`,
`GET /collection/schedule`, `/collection/presets`, `/collection/runs?limit=20`, the
larger run, and a page of 50 of its sellers. Per endpoint: requests per second, p50 and
p99 latency, the service's CPU time per request (user + system from /proc, the figure
that travels between machines), and the ratio to the bare app measured just before on
the same database's turn. Goals (issue 17): single-object reads at >= 25 % of the bare
app, list pages at >= 15 %, p99 under 100 ms.

Then a write-heavy mix on the same service: half the requests PATCH a preset or the
schedule, half read them, by 32 connections. It must answer no 5xx and never "database is
locked" (counted in the answers and in the service's log).

`wrk` is needed (`apt-get install wrk` on Debian and Ubuntu, `brew install wrk` on
macOS); without it the benchmark says so and measures nothing. Nothing is asserted. The
machine's load average is printed next to the figures: other work on the machine lowers
both columns, the ratio less. Usage (from the repository root)::

    .venv/bin/python bench/http_requests.py
    .venv/bin/python bench/http_requests.py --db sqlite --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from benchlib import (
    BENCH_SECRET,
    DEFAULT_PG_URL,
    ChildProcess,
    child_environment,
    databases_to_measure,
    format_table,
    postgres_database,
)
from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "apps" / "api" / "src"  # the code measured: this checkout's
CONNECTIONS = 32
BARE_BODY = {"status": "ok", "items": [{"id": 1, "name": "fixed"}]}
SINGLE_GOAL, LIST_GOAL, P99_GOAL_MS = 0.25, 0.15, 100.0
INSTALL_WRK = "apt-get install wrk (Debian, Ubuntu) or brew install wrk (macOS)"

# Prints the figures of a wrk run as one JSON line (its own summary is for people).
SUMMARY_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"bad_status": %d, "socket_errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""

# The write-heavy mix: PATCH the preset, read the presets, PATCH the schedule, read it,
# in turn; every answer's status is counted, and answers that say "database is locked".
MIX_LUA = """
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args)
  statuses = {}
  locked = 0
  turn = 0
end
request = function()
  turn = turn + 1
  local step = turn % 4
  local headers = {["Content-Type"] = "application/json"}
  for name, value in pairs(wrk.headers) do headers[name] = value end  -- the token
  if step == 0 then
    local categories = (turn % 8 == 0) and '["172282", "281407"]' or '["172282", "11116"]'
    return wrk.format("PATCH", PRESET_PATH, headers, '{"category_ids": ' .. categories .. '}')
  elseif step == 1 then
    return wrk.format("GET", "/collection/presets")
  elseif step == 2 then
    local cron = (turn % 8 == 2) and "0 0 1 * *" or "0 6 1 * *"
    return wrk.format("PATCH", "/collection/schedule", headers,
      '{"cron_expression": "' .. cron .. '"}')
  end
  return wrk.format("GET", "/collection/schedule")
end
response = function(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if body and string.find(body, "database is locked", 1, true) then locked = locked + 1 end
end
done = function(summary, latency, requests)
  local all, locked_total = {}, 0
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get("statuses")) do all[key] = (all[key] or 0) + count end
    locked_total = locked_total + thread:get("locked")
  end
  local parts = {}
  for key, count in pairs(all) do table.insert(parts, string.format('"%s": %d', key, count)) end
  io.write(string.format(
    '\\n{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"socket_errors": %d, "locked": %d, "statuses": {%s}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    locked_total, table.concat(parts, ", ")))
end
"""


@dataclass(frozen=True, slots=True)
class Load:
    """What one wrk run measured, and the server's CPU time meanwhile."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int
    cpu_seconds: float | None
    extra: dict[str, Any]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.cpu_seconds is None or not self.requests:
            return None
        return self.cpu_seconds * 1000 / self.requests


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server(ChildProcess):
    """A uvicorn process on a free local port, its output in a log file."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)], env=env, stdout=out, stderr=out
            )

    def wait_until(self, path: str, timeout: float = 120.0) -> None:
        """Wait until `path` answers 200."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.log.name}: the server exited; see {self.log}")
                try:
                    if client.get(f"{self.url}{path}").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"{self.url}{path} not answering after {timeout}s; see {self.log}")


@contextmanager
def running(server: Server, ready_path: str) -> Iterator[Server]:
    try:
        server.wait_until(ready_path)
        yield server
    finally:
        server.stop()


def app_environment(**values: str) -> dict[str, str]:
    """A child's clean environment importing `app` from this checkout, plus `values`."""
    return {**child_environment(), "PYTHONPATH": str(SOURCE), **values}


def wrk(server: Server, path: str, seconds: float, script: Path, token: str | None = None) -> Load:
    """Load `path` with wrk for `seconds`, 32 connections on one thread."""
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--timeout", "10s"]
    command += ["-s", str(script)]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    cpu_before = server.cpu_seconds()
    output = subprocess.run(
        [*command, f"{server.url}{path}"], capture_output=True, text=True, check=True
    ).stdout
    cpu_after = server.cpu_seconds()
    figures = json.loads(output.strip().splitlines()[-1])
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return Load(
        requests=figures.pop("requests"),
        seconds=figures.pop("duration_us") / 1e6,
        p50_ms=figures.pop("p50_us") / 1000,
        p99_ms=figures.pop("p99_us") / 1000,
        failures=figures.pop("bad_status", 0) + figures.pop("socket_errors"),
        cpu_seconds=cpu,
        extra=figures,
    )


# --- the bare app (the peer), run as a child of this script -------------------------------------


def serve_bare_app(port: int) -> None:
    """Serve the peer: FastAPI answering a fixed JSON body, as the service runs uvicorn."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/bare")
    async def bare() -> dict[str, Any]:
        return BARE_BODY

    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


FLOOR_QUERY = (
    "SELECT s.id, s.cron_expression, s.timezone, s.enabled, s.next_run_at, p.name "
    "FROM collection_schedules s LEFT JOIN amazon_category_presets p ON p.id = s.preset_id "
    "WHERE s.is_default ORDER BY s.created_at LIMIT 1"
)


def serve_floor_app(port: int, database_url: str) -> None:
    """Serve the floor: FastAPI answering the default schedule's row, read by one query
    straight through the driver (aiosqlite or asyncpg, a pool of connections) - no
    authentication, session, ORM or response model. What a request that touches the
    database costs at the least, on this machine and database."""
    import asyncio
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    import aiosqlite
    import asyncpg
    import uvicorn
    from fastapi import FastAPI

    url = make_url(database_url)
    pool: Any = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        nonlocal pool
        if url.get_backend_name() == "sqlite":
            pool = asyncio.Queue()
            for _ in range(4):
                pool.put_nowait(await aiosqlite.connect(str(url.database)))
        else:
            dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
            pool = await asyncpg.create_pool(dsn, min_size=4, max_size=10)
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/floor")
    async def floor() -> dict[str, Any]:
        if isinstance(pool, asyncio.Queue):
            connection = await pool.get()
            try:
                async with connection.execute(FLOOR_QUERY) as cursor:
                    row = await cursor.fetchone()
            finally:
                pool.put_nowait(connection)
        else:
            async with pool.acquire() as connection:
                row = await connection.fetchrow(FLOOR_QUERY)
        names = ("id", "cron_expression", "timezone", "enabled", "next_run_at", "preset_name")
        return {name: str(value) for name, value in zip(names, row or (), strict=False)}

    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


# --- the service: seeded through its API -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seeded:
    token: str
    preset_id: str
    run_id: str


def bootstrap(env: dict[str, str]) -> str:
    """The admin's token, from `collection-api bootstrap` (org and admin created)."""
    output = subprocess.run(
        [sys.executable, "-m", "app.cli", "bootstrap", "--org", "Bench", "--email", "a@bench.test"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return str(json.loads(output)["token"])


def seed(server: Server, token: str, presets: int, runs: int) -> Seeded:
    """Presets, the schedule, `runs` small completed runs and a larger one, via the API."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30.0) as client:

        def call(method: str, path: str, **body: Any) -> dict[str, Any]:
            response = client.request(method, path, json=body or None)
            if response.status_code >= 400:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
            return dict(response.json())

        preset_ids = [
            call("POST", "/collection/presets", name=f"Preset {n}", category_ids=["172282"])["id"]
            for n in range(presets)
        ]
        big = call(
            "POST", "/collection/presets", name="Electronics", category_ids=["172282", "281407"]
        )["id"]
        call("PATCH", "/collection/schedule", preset_id=big, enabled=True, timezone="UTC")

        def complete_run(preset_id: str, products: int, listings: int) -> str:
            run_id = call(
                "POST",
                "/collection/runs",
                preset_id=preset_id,
                products_per_category=products,
                listings_per_product=listings,
            )["id"]
            call("POST", f"/collection/runs/{run_id}/start")
            deadline = time.monotonic() + 300
            while (status := call("GET", f"/collection/runs/{run_id}")["status"]) != "completed":
                if status in ("failed", "cancelled") or time.monotonic() > deadline:
                    raise RuntimeError(f"seeding run {run_id} ended {status}")
                time.sleep(0.1)
            return str(run_id)

        for n in range(runs):
            complete_run(preset_ids[n % len(preset_ids)], 5, 5)
        run_id = complete_run(big, 50, 20)
    return Seeded(token=token, preset_id=big, run_id=run_id)


def service_command() -> list[str]:
    return [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"]


# --- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    label: str
    path: str
    kind: str  # "single", "list" or "" (no goal)


def endpoints(seeded: Seeded) -> list[Endpoint]:
    run = f"/collection/runs/{seeded.run_id}"
    return [
        Endpoint("/health", "/health", ""),
        Endpoint("GET /collection/schedule", "/collection/schedule", "single"),
        Endpoint("GET /collection/presets", "/collection/presets", "list"),
        Endpoint("GET /collection/runs?limit=20", "/collection/runs?limit=20", "list"),
        Endpoint("GET a run", run, "single"),
        Endpoint("GET 50 sellers of a run", f"{run}/sellers?limit=50", "list"),
    ]


def verdict(load: Load, bare: Load, kind: str) -> str:
    if not kind:
        return "—"
    goal = SINGLE_GOAL if kind == "single" else LIST_GOAL
    ok = load.per_second >= goal * bare.per_second and load.p99_ms < P99_GOAL_MS
    mark = "met" if ok and not load.failures else "not met"
    return f">= {goal:.0%}, p99 < {P99_GOAL_MS:g} ms: {mark}"


def row(db: str, label: str, load: Load, bare: Load, goal: str) -> list[str]:
    cpu = load.cpu_ms_per_request
    return [
        db,
        label,
        f"{load.per_second:,.0f}",
        f"{load.p50_ms:.1f}",
        f"{load.p99_ms:.1f}",
        "—" if cpu is None else f"{cpu:.2f}",
        f"{load.per_second / bare.per_second:.1%}" if bare.per_second else "—",
        str(load.failures),
        goal,
    ]


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def measure(
    db: str, database_url: str, data_dir: Path, script: Path, args: argparse.Namespace
) -> tuple[list[list[str]], list[str]]:
    """The table's rows for one database, and notes."""
    env = app_environment(
        DATABASE_URL=database_url,
        DATA_DIR=str(data_dir),
        JWT_SECRET=BENCH_SECRET,
        SAMPLE_PROVIDER_LATENCY_MS="0",
    )
    bare_command = [sys.executable, str(Path(__file__).resolve()), "--bare-app"]
    rows: list[list[str]] = []
    notes: list[str] = []
    reads: list[tuple[str, float]] = []
    service = Server(service_command(), env, data_dir / "service.log")
    with running(service, "/ready"):
        token = bootstrap(env)
        print(f"… seeding {db}", file=sys.stderr, flush=True)
        seeded = seed(service, token, args.presets, args.runs)
        bare_server = Server(bare_command, child_environment(), data_dir / "bare.log")
        with running(bare_server, "/bare"):
            wrk(bare_server, "/bare", 1, script)
            bare = wrk(bare_server, "/bare", args.seconds, script)
        rows.append(row(db, "bare FastAPI app (the peer)", bare, bare, "—"))
        floor_command = [*bare_command[:-1], "--floor-app", database_url]
        floor_server = Server(floor_command, child_environment(), data_dir / "floor.log")
        with running(floor_server, "/floor"):
            wrk(floor_server, "/floor", 1, script)
            floor = wrk(floor_server, "/floor", args.seconds, script)
        rows.append(row(db, "FastAPI + one query, driver only", floor, bare, "—"))
        for endpoint in endpoints(seeded):
            print(f"… {db}: {endpoint.label}", file=sys.stderr, flush=True)
            wrk(service, endpoint.path, 1, script, seeded.token)
            load = wrk(service, endpoint.path, args.seconds, script, seeded.token)
            rows.append(row(db, endpoint.label, load, bare, verdict(load, bare, endpoint.kind)))
            if endpoint.kind:
                reads.append((endpoint.label, load.per_second))
        notes.append(f"{db}: load average after the reads {load_average()}")
        shares = ", ".join(
            f"{label} {per_second / floor.per_second:.0%}"
            for label, per_second in reads
            if floor.per_second
        )
        notes.append(f"{db}: of the one-query floor's req/s: {shares}")
        mix = data_dir / "mix.lua"  # it PATCHes the seeded preset, known only now
        preset_path = json.dumps(f"/collection/presets/{seeded.preset_id}")
        mix.write_text(MIX_LUA.replace("PRESET_PATH", preset_path))
        mixed = wrk(service, "/collection/schedule", args.seconds, mix, seeded.token)
        statuses: dict[str, int] = mixed.extra["statuses"]
        server_errors = sum(count for status, count in statuses.items() if status >= "500")
        log = service.log.read_text(errors="replace")
        locked_in_log = log.count("database is locked")
        rows.append(
            row(
                db,
                "write mix (1/2 PATCH preset, schedule)",
                mixed,
                bare,
                f"0 5xx, 0 locked: {server_errors} 5xx, {mixed.extra['locked'] + locked_in_log}"
                " locked",
            )
        )
        answered = ", ".join(f"{s}: {c}" for s, c in sorted(statuses.items()))
        notes.append(f"{db}: write mix answers by status: {answered}")
    return rows, notes


@contextmanager
def fresh_database(db: str, pg_server: URL) -> Iterator[tuple[str, Path]]:
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        if db == "sqlite":
            yield f"sqlite+aiosqlite:///{tmp}/collection.db", Path(tmp)
            return
        with postgres_database(pg_server, "bench_http") as url:
            yield url, Path(tmp)


COLUMNS = [
    "db",
    "endpoint",
    "req/s",
    "p50 ms",
    "p99 ms",
    "CPU ms/req",
    "of bare",
    "failed",
    "goal",
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--db", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a PostgreSQL server to use")
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk's duration per endpoint")
    parser.add_argument("--presets", type=int, default=20, help="presets seeded")
    parser.add_argument("--runs", type=int, default=20, help="small completed runs seeded")
    parser.add_argument("--bare-app", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor-app", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_app:
        serve_floor_app(args.port, args.floor_app)
        return 0
    if args.bare_app:
        serve_bare_app(args.port)
        return 0
    if shutil.which("wrk") is None:
        print(f"Skipped: the servers are loaded with wrk, which is missing ({INSTALL_WRK}).")
        return 0
    databases, notes = databases_to_measure(args.db, make_url(args.pg_url))
    table: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-http-lua-") as scripts:
        script = Path(scripts) / "summary.lua"
        script.write_text(SUMMARY_LUA)
        for db in databases:
            with fresh_database(db, make_url(args.pg_url)) as (url, data_dir):
                rows, db_notes = measure(db, url, data_dir, script, args)
                table += rows
                notes += db_notes
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node()} · {os.cpu_count()} CPUs · "
        f"Python {platform.python_version()} · wrk -t1 -c{CONNECTIONS} -d{args.seconds:g}s · "
        f"load average {load_average()}"
    )
    print()
    print(format_table(COLUMNS, table))
    print()
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
