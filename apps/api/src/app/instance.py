"""One instance of the service, wired: the parts every request, page and background task
uses, built once per process by the application's lifespan (and by tests and benches)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import httpx
from prometheus_client import CollectorRegistry
from starlette.requests import HTTPConnection

from app.core.config import Settings
from app.core.database import Database
from app.providers import build_providers
from app.providers.base import AmazonProvider, EbayProvider
from app.runs.commands import RunCommands
from app.runs.executor import RunExecutor
from app.runs.leases import Leases
from app.runs.lifecycle import RunLifecycle
from app.runs.notifications import Mailer, notify_run_ended
from app.runs.pipeline import Pipeline
from app.runs.wakeups import RunWakeups
from app.runs.watch import RunWatch
from app.scheduling.commands import ScheduleCommands
from app.scheduling.engine import CollectionScheduler, ScheduleMetrics
from app.scheduling.schedules import ScheduleService
from app.watchlists.mail import mail_digests


@dataclass(frozen=True, slots=True)
class Instance:
    """The parts of one running instance, from the database up to the commands."""

    settings: Settings
    database: Database
    http: httpx.AsyncClient
    amazon: AmazonProvider
    ebay: EbayProvider
    mailer: Mailer
    runs: RunLifecycle
    leases: Leases
    pipeline: Pipeline
    executor: RunExecutor
    run_commands: RunCommands
    run_watch: RunWatch
    schedules: ScheduleService
    scheduler: CollectionScheduler
    schedule_commands: ScheduleCommands

    @classmethod
    def build(
        cls,
        settings: Settings,
        database: Database,
        *,
        http: httpx.AsyncClient,
        registry: CollectorRegistry | None = None,
        amazon: AmazonProvider | None = None,
        ebay: EbayProvider | None = None,
    ) -> Instance:
        """Wire the parts; the providers of `settings` unless given."""
        if amazon is None or ebay is None:
            built_amazon, built_ebay = build_providers(settings, http=http, database=database)
            amazon, ebay = amazon or built_amazon, ebay or built_ebay
        mailer = Mailer(settings)
        runs = RunLifecycle(settings)
        leases = Leases(database, settings)
        pipeline = Pipeline(database, settings, leases, amazon=amazon, ebay=ebay)
        executor = RunExecutor(leases, pipeline, settings, wakeups=RunWakeups(database))
        executor.on_finished.append(partial(notify_run_ended, database, mailer))
        executor.on_finished.append(partial(mail_digests, database, mailer))
        schedules = ScheduleService(database, settings, runs)
        metrics = ScheduleMetrics(registry) if registry is not None else None
        scheduler = CollectionScheduler(
            schedules, executor, mailer, settings, metrics=metrics, own_loop=True
        )
        return cls(
            settings=settings,
            database=database,
            http=http,
            amazon=amazon,
            ebay=ebay,
            mailer=mailer,
            runs=runs,
            leases=leases,
            pipeline=pipeline,
            executor=executor,
            run_commands=RunCommands(runs, executor, database, mailer),
            run_watch=RunWatch(database, lambda: runs.clock()),
            schedules=schedules,
            scheduler=scheduler,
            schedule_commands=ScheduleCommands(schedules, scheduler),
        )


def instance_of(connection: HTTPConnection) -> Instance:
    """The parts of the instance serving a request (built by the application's lifespan)."""
    instance: Instance = connection.app.state.instance
    return instance
