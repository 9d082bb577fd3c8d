"""The scheduler benchmark's burst: many schedules due at one instant, fired by replicas
while a probe asks their API, next to the physical bound of its writes and the peer."""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from scheduler_bound import bulk_insert_bound
from scheduler_ours import (
    POLL_SECONDS,
    Row,
    at_whole_second,
    far_future,
    fire_log_reader,
    fire_stats,
    fresh_database,
    load_average,
    ms,
    probe_token,
    replicas,
    seed,
    set_due,
    spread,
    wait_until,
)
from scheduler_peer import run_peer
from sqlalchemy.engine import URL

PROBE_PATH = "/collection/schedule"  # an authenticated read: token, user, membership, a row
PROBE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ProbeSample:
    """One request of the probe: when it was sent, how long it took, whether it answered 200."""

    sent_at: float
    seconds: float
    ok: bool


class ApiProbe:
    """One thread per replica, each asking `PROBE_PATH` one request after the other with
    `pause` seconds between them, as a user's open page would (but more often)."""

    def __init__(self, urls: list[str], token: str, pause: float = 0.1) -> None:
        self.urls = urls
        self.headers = {"Authorization": f"Bearer {token}"}
        self.pause = pause
        self.samples: list[ProbeSample] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._ask, args=(url,)) for url in urls]

    def __enter__(self) -> ApiProbe:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _ask(self, url: str) -> None:
        with httpx.Client(base_url=url, timeout=PROBE_TIMEOUT, headers=self.headers) as client:
            while not self._stop.is_set():
                sent = time.time()
                try:
                    ok = client.get(PROBE_PATH).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.samples.append(ProbeSample(sent, time.time() - sent, ok))
                self._stop.wait(self.pause)

    def between(self, start: float, end: float) -> list[ProbeSample]:
        """The requests sent in [start, end)."""
        return [sample for sample in list(self.samples) if start <= sample.sent_at < end]


# The runs a burst starts wait this long in their first provider call, so that they stay
# active (an organization's later fires are skipped, as in production where a run takes
# minutes) and spend no CPU next to the fires, as the peer's runs, which nobody executes.
BURST_PROVIDER_LATENCY_MS = "60000"


def scenario_burst(db: str, pg_server: URL, args: argparse.Namespace) -> list[Row]:
    count = args.replicas if db == "postgresql" else 1
    with fresh_database(db, pg_server) as (url, data_dir):
        orgs = asyncio.run(seed(url, data_dir, args.burst, args.per_org, far_future()))
        token = asyncio.run(probe_token(url, data_dir))
        with (
            replicas(url, data_dir, count, **burst_environment(args)) as started,
            fire_log_reader(url, data_dir) as fire_log,
        ):
            for replica in started:
                replica.wait_ready()
            due = at_whole_second(2 * POLL_SECONDS + 1 + args.burst / 50_000)
            asyncio.run(set_due(url, data_dir, due))
            with ApiProbe([replica.url for replica in started], token) as probe:
                wait_until(due)
                load_before = load_average()
                cpu_before = [replica.cpu_seconds() for replica in started]
                seen: float | None = None
                deadline = time.time() + args.timeout
                while time.time() < deadline:
                    if fire_log.count() >= args.burst:  # a fire commits with its run or skip
                        seen = time.time() - due.timestamp()
                        break
                    time.sleep(0.1)
                cpu_after = [replica.cpu_seconds() for replica in started]
                load = f"{load_before:.1f} → {load_average():.1f}"
            time.sleep(POLL_SECONDS + 0.5)  # a few more polls: nothing may fire twice
        stats = asyncio.run(fire_stats(url, data_dir))
    with fresh_database(db, pg_server) as (url, data_dir):
        asyncio.run(seed(url, data_dir, args.burst, args.per_org, due))
        bound_load = load_average()
        bound = asyncio.run(bulk_insert_bound(url, data_dir, args.bound_batch))
        bound_load_text = f"{bound_load:.1f} → {load_average():.1f}"
    peers = {} if args.no_peer else burst_peers(db, pg_server, args)
    read = [
        (b, a)
        for b, a in zip(cpu_before, cpu_after, strict=True)
        if b is not None and a is not None
    ]
    cpu = sum(a - b for b, a in read) if len(read) == count else None  # None: no /proc
    end = due.timestamp() + (seen if seen is not None else args.timeout)
    during = probe.between(due.timestamp(), end)
    idle = probe.between(0, due.timestamp())
    n = f"{args.burst:,}"
    outcomes = stats["outcomes"]
    shares = sorted(stats["per_instance"].values())
    last = (stats["last_fired_at"] - due).total_seconds() if stats["last_fired_at"] else None
    plural = "s" if count > 1 else ""
    rows = [
        Row(
            "burst",
            db,
            f"{n} due at once: all fires committed",
            f"{seen:.2f} s ({count} replica{plural})"
            if seen is not None
            else f"not within {args.timeout:.0f} s",
            peer_cell(peers, "time", args),
            "< 10 s",
            load,
            [
                spread(args, args.burst, orgs),
                f"latest fire decision {last:.2f} s after due" if last is not None else "",
                "outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())),
                *peer_notes(peers),
            ],
        ),
        Row(
            "burst",
            db,
            f"{n} due at once: fires / runs started / skipped",
            f"{stats['fires']:,} / {outcomes.get('started', 0):,} / "
            f"{outcomes.get('skipped', 0):,} (runs: {stats['runs']:,})",
            peer_cell(peers, "counts", args),
            f"{n} / {orgs:,} / {args.burst - orgs:,}",
            load,
        ),
        Row(
            "burst",
            db,
            f"{n} due at once: duplicates / misses",
            f"{stats['duplicates']} / {stats['misses']}",
            peer_cell(peers, "misses", args),
            "0 / 0",
            load,
        ),
        Row(
            "burst",
            db,
            f"{n} due at once: fires per replica (fewest / most)",
            f"{shares[0]:,} / {shares[-1]:,}" if shares else "n/a",
            "one process only",
            "even",
            load,
            [
                "fires per replica: "
                + ", ".join(f"{k}={v:,}" for k, v in sorted(stats["per_instance"].items()))
            ],
        ),
        Row(
            "burst",
            db,
            f"{n} due at once: CPU per fire (all replicas)",
            f"{cpu / stats['fires'] * 1000:.3f} ms ({cpu:.2f} s CPU in {seen:.2f} s wall)"
            if cpu is not None and seen is not None and stats["fires"]
            else "n/a",
            peer_cell(peers, "cpu", args),
            "—",
            load,
        ),
        Row(
            "burst",
            db,
            f"{n} due at once: bound, the same rows inserted in bulk",
            f"ours {seen / bound['seconds']:.1f}x the bound's wall time"
            if seen is not None
            else "n/a",
            f"bound: {bound['seconds']:.2f} s wall, "
            f"{bound['cpu_seconds'] / bound['fires'] * 1000:.3f} ms CPU per fire",
            "—",
            bound_load_text,
            [
                f"bound: {bound['fires']:,} fire rows and {bound['runs']:,} runs (with their "
                f"categories) written straight through the driver, a transaction per "
                f"{args.bound_batch:,} fires with one multi-row INSERT per table, on a "
                "database seeded alike; its CPU is the writing process's (on SQLite the "
                "database's work too)"
            ],
        ),
        Row(
            "burst",
            db,
            f"{n} due at once: API p50 / p99 / max during the burst",
            f"{ms([s.seconds for s in during], 0.5, 0.99, 1.0)} "
            f"({len(during)} requests, {sum(not s.ok for s in during)} failed)"
            if during
            else "no request",
            "—",
            "p99 < 200 ms",
            load,
            [
                f"API probe: GET {PROBE_PATH} as an organization's admin, one request after "
                f"another on each replica; before the due time "
                f"{ms([s.seconds for s in idle], 0.5, 0.99)} ({len(idle)} requests)"
                if idle
                else ""
            ],
        ),
    ]
    return rows


def burst_environment(args: argparse.Namespace) -> dict[str, str]:
    """The replicas' settings in a burst: the runs' providers wait, and `--batch-size`."""
    environment = {"SAMPLE_PROVIDER_LATENCY_MS": BURST_PROVIDER_LATENCY_MS}
    if args.batch_size:
        environment["SCHEDULER_BATCH_SIZE"] = str(args.batch_size)
    return environment


def burst_peers(db: str, pg_server: URL, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The peer's burst, with APScheduler's default misfire_grace_time (1 s) and no limit."""
    peers = {}
    for grace in ("1", "none"):
        with fresh_database(db, pg_server) as (url, data_dir):
            asyncio.run(seed(url, data_dir, args.burst, args.per_org, far_future()))
            peers[grace] = run_peer(
                "burst",
                args.timeout,
                database_url=url,
                data_dir=data_dir,
                timeout=args.timeout,
                grace=grace,
            )
    return peers


def peer_cell(peers: dict[str, dict[str, Any]], figure: str, args: argparse.Namespace) -> str:
    """The peer's cell of a burst row."""
    if not peers:
        return "not measured (--no-peer)"
    peer, unlimited = peers["1"], peers["none"]

    def took(result: dict[str, Any]) -> str:
        if result["ran"] < args.burst:
            return f"never ({result['ran']:,} jobs ran)"
        return f"{result['seconds']:.2f} s"

    if figure == "time":
        return f"grace 1 s: {took(peer)}; no grace limit: {took(unlimited)}"
    if figure == "counts":
        return (
            f"no grace limit: {unlimited['ran']:,} / {unlimited['runs']:,} / "
            f"{unlimited['skipped']:,}"
        )
    if figure == "misses":
        return f"n/a / {peer['missed']:,} (grace 1 s); n/a / {unlimited['missed']} (no limit)"
    if not unlimited["ran"]:
        return "n/a"
    per_fire = unlimited["cpu_seconds"] / unlimited["ran"] * 1000
    return f"no grace limit: {per_fire:.2f} ms ({unlimited['cpu_seconds']:.2f} s CPU)"


def peer_notes(peers: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"peer (misfire grace {grace}): {p['ran']} jobs ran ({p['runs']} runs created, "
        f"{p['skipped']} refused), {p['missed']} dropped as misfired, {p['failed']} failed"
        for grace, p in peers.items()
    ]
