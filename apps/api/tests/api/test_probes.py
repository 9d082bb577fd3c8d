"""The probes of each role: /health says what the instance does and whether it drains, and
fails when its run executor stopped by itself; /ready checks the scheduler only where the
instance runs it, and a draining instance is not ready. The worker's app serves the probes
and /metrics, and no API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from app.runs.executor import RunExecutor
from app.worker import create_worker_app


@asynccontextmanager
async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as http:
        yield http


async def test_the_all_in_one_instance_says_so(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json() | {"version": None} == {
        "status": "ok",
        "version": None,
        "role": "all",
        "state": "running",
        "runs_executing": 0,
    }


async def test_an_api_only_replica_is_ready_without_a_scheduler(
    app: FastAPI, settings: Settings
) -> None:
    # SCHEDULER_ENABLED is true: the role alone keeps the engine off here
    replica = create_app(
        settings.model_copy(update={"instance_role": "api", "scheduler_enabled": True})
    )
    async with replica.router.lifespan_context(replica):
        async with _client(replica) as http:
            health = (await http.get("/health")).json()
            ready = await http.get("/ready")
        assert not replica.state.instance.scheduler.running
    assert (health["role"], health["state"]) == ("api", "running")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "schema": "ok"}


async def test_a_worker_answers_probes_and_metrics_only_and_says_when_it_drains(
    app: FastAPI, settings: Settings
) -> None:
    worker = create_worker_app(
        settings.model_copy(update={"instance_role": "worker", "instance_id": "probe-worker:1"})
    )
    async with worker.router.lifespan_context(worker):
        executor: RunExecutor = worker.state.instance.executor
        async with _client(worker) as http:
            health = await http.get("/health")
            assert health.status_code == 200
            assert (health.json()["role"], health.json()["state"]) == ("worker", "running")
            assert (await http.get("/ready")).status_code == 200
            assert (await http.get("/metrics")).status_code == 200
            assert (await http.get("/collection/runs")).status_code == 404
            assert (await http.get("/docs")).status_code == 404

            loop = executor._loop_task
            assert loop is not None
            loop.cancel()  # as if it had ended by itself
            await asyncio.gather(loop, return_exceptions=True)
            failing = await http.get("/health")
            assert failing.status_code == 503
            assert failing.json()["status"] == "failing"

            await executor.drain(0)
            draining = await http.get("/health")
            assert draining.status_code == 200  # alive: let it finish handing over
            assert draining.json()["state"] == "draining"
            not_ready = await http.get("/ready")
            assert not_ready.status_code == 503
            assert not_ready.json()["checks"]["instance"] == "draining: shutting down"
