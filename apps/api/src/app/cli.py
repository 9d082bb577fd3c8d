"""The `collection-api` command: serve, worker, migrate, and local tokens and bootstrap; its
`runs` commands are in `app.cli_runs`."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import TYPE_CHECKING

import click
import httpx
import sqlalchemy as sa
from pydantic import ValidationError

from app import __version__
from app.cli_runs import runs
from app.core.config import Settings
from app.core.observability import configure_logging
from app.core.text import refused_character
from app.models import email_address
from app.users import local_user_id

if TYPE_CHECKING:
    from app.core.database import Database


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            if err["loc"]
            else err["msg"].removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise click.ClickException(f"invalid configuration: {problems}") from None


def _email(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """An address the server accepts (`admin@localhost`, the local operator's, included)."""
    if value is None:
        return None
    try:
        return email_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="collection-api")
def main() -> None:
    """Collection API: Amazon best sellers, their eBay sellers, on a cron schedule.

    Configuration comes from the environment and a .env file (DATABASE_URL, JWT_SECRET,
    ...; see the README). With nothing set it uses SQLite under ./data.
    """


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to bind."
)
@click.option(
    "--role",
    type=click.Choice(["all", "api"]),
    help="all: the API, the schedule engine and the run executor in this one process; "
    "api: the API only, next to `collection-api worker` processes on the same database. "
    "Default: INSTANCE_ROLE, else all.",
)
@click.option("--no-migrate", is_flag=True, help="Do not upgrade the database schema first.")
def serve(host: str, port: int, role: str | None, no_migrate: bool) -> None:
    """Migrate the database (unless --no-migrate) and serve the HTTP API and web UI.

    With the role `all` (the default) this process also fires the schedules and executes
    the runs: one process does everything. With `--role api` (or INSTANCE_ROLE=api) it
    only answers requests, and the runs started through it are executed by the workers
    (`collection-api worker`) sharing its PostgreSQL database: see docs/deployment.md.

    SIGTERM or SIGINT stops it gracefully: it accepts no more connections, lets the
    requests in flight finish, hands the runs it executes over to other instances at
    their next checkpoint (at most SHUTDOWN_DRAIN_SECONDS), and exits.
    """
    import uvicorn

    from app.main import create_app
    from app.serving import Server

    settings = _settings()
    if role is not None:
        settings = settings.model_copy(update={"instance_role": role})
    if settings.instance_role == "worker":
        raise click.ClickException(
            "INSTANCE_ROLE=worker: start a worker with `collection-api worker`; "
            "`serve` runs the roles all and api"
        )
    configure_logging(settings.log_level, settings.log_format)
    _prepare_database(settings, no_migrate)
    app = create_app(settings)
    if not settings.jwt_secret and not settings.jwt_jwks_url:
        # The embedded default: whoever started the server may sign in to the web UI.
        from app.web import local_url

        click.echo(f"Web UI: {_sign_in_link(settings, local_url(host, port), None)}")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        # event streams end when the shutdown begins (app.serving); a request that is
        # still open after this long must not hold the drain back for ever
        timeout_graceful_shutdown=max(1, round(settings.shutdown_drain_seconds)),
    )
    Server(config, app).run()


@main.command()
@click.option(
    "--health-host",
    default="127.0.0.1",
    show_default=True,
    help="Interface of the probe endpoints (0.0.0.0 in a container, for the orchestrator).",
)
@click.option(
    "--health-port",
    default=8001,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port of /health (liveness), /ready (readiness) and /metrics.",
)
@click.option("--no-migrate", is_flag=True, help="Do not upgrade the database schema first.")
def worker(health_host: str, health_port: int, no_migrate: bool) -> None:
    """Fire the schedules and execute the runs, with no HTTP API.

    For a deployment whose run execution grows apart from its web traffic: API replicas
    (`serve --role api`) behind a load balancer and any number of workers, all on one
    PostgreSQL database. A worker executes up to RUN_MAX_CONCURRENT runs at once: runs
    started through any replica (it hears of them at once), runs its schedules fire
    (each due time fires once, whichever worker fires it), and runs of an instance that
    died, once their lease expires (RUN_LEASE_SECONDS). SCHEDULER_ENABLED=false makes a
    worker that only executes runs.

    It answers /health, /ready and /metrics on --health-host:--health-port for the
    orchestrator's probes. SIGTERM or SIGINT drains it: it claims no more runs or fires,
    its runs stop at their next checkpoint and go to other instances at once (at most
    SHUTDOWN_DRAIN_SECONDS), and it exits; /health answers "draining" until then.
    """
    from app.worker import listen, run_worker

    settings = _settings()
    if settings.instance_role == "api":
        raise click.ClickException(
            "INSTANCE_ROLE=api: a worker executes runs; unset INSTANCE_ROLE for the worker "
            "(the API replicas keep INSTANCE_ROLE=api or `serve --role api`)"
        )
    settings = settings.model_copy(update={"instance_role": "worker"})
    configure_logging(settings.log_level, settings.log_format)
    _prepare_database(settings, no_migrate)
    try:
        probes = listen(health_host, health_port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {health_host}:{health_port} for the probes "
            f"({exc.strerror or exc}); choose another --health-port or --health-host"
        ) from None
    with probes:
        asyncio.run(run_worker(settings, probes))


def _prepare_database(settings: Settings, no_migrate: bool) -> None:
    """Wait for the database to accept connections, then migrate it unless told not to."""
    from app import migrate

    try:
        migrate.wait_for_database(settings)
    except migrate.DatabaseUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    if not no_migrate:
        migrate.upgrade(settings)


@main.command("sign-in-link")
@click.option(
    "--email",
    callback=_email,
    help="Whom it signs in (default: the first admin of any organization, or else the "
    "local operator admin@localhost).",
)
@click.option(
    "--url",
    envvar="COLLECTION_API_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="Address of the server, as the browser reaches it (env COLLECTION_API_URL).",
)
def sign_in_link(email: str | None, url: str) -> None:
    """Print a one-time link that signs in to the web UI (works once, for 15 minutes).

    The way back in after signing out: it is kept in the database the server uses, so it
    works while `serve` runs in another process (or on another replica).
    """
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    click.echo(_sign_in_link(settings, url, email))


def _sign_in_link(settings: Settings, base_url: str, email: str | None) -> str:
    """A new one-time link, and whom it signs in, as one line."""
    from app import web_sessions
    from app.core.clock import utcnow
    from app.web import sign_in_url

    async def issue() -> tuple[str, str]:
        from app.core.database import Database

        database = Database.from_settings(settings)
        try:
            async with database.transaction() as session:
                who = email or await web_sessions.operator_email(session)
                code = await web_sessions.issue_sign_in_link(session, email=who, now=utcnow())
            return code, who
        except sa.exc.OperationalError as exc:
            raise click.ClickException(
                f"cannot store the link in {database.dialect} (run `collection-api migrate` "
                f"first?): {exc.orig}"
            ) from None
        finally:
            await database.dispose()

    code, who = asyncio.run(issue())
    minutes = round(web_sessions.SIGN_IN_LINK_LIFETIME.total_seconds() / 60)
    return (
        f"open {sign_in_url(base_url, code)} to sign in as {who} "
        f"(works once, for {minutes} minutes; `collection-api sign-in-link` prints another)"
    )


@main.command("migrate")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def migrate_command(revision: str) -> None:
    """Upgrade the database schema (safe while other instances start)."""
    from app import migrate

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    migrate.upgrade(settings, revision)
    click.echo(f"database at {revision}", err=True)


@main.command()
@click.option("--email", required=True, callback=_email, help="The user's email claim.")
@click.option("--sub", type=click.UUID, help="User id (default: derived from the email).")
@click.option(
    "--ttl", default=86_400, show_default=True, type=click.IntRange(1), help="Lifetime in seconds."
)
def token(email: str, sub: uuid.UUID | None, ttl: int) -> None:
    """Print a signed JWT for local use (HS256, the secret the server verifies)."""
    from app.auth import issue_token

    settings = _settings()
    click.echo(
        issue_token(settings, user_id=sub or local_user_id(email), email=email, ttl_seconds=ttl)
    )


@main.command()
@click.option("--org", "org_name", required=True, help="Organization name.")
@click.option("--email", required=True, callback=_email, help="Email of its first admin.")
@click.option(
    "--ttl",
    default=86_400,
    show_default=True,
    type=click.IntRange(1),
    help="Lifetime of the printed token, in seconds.",
)
def bootstrap(org_name: str, email: str, ttl: int) -> None:
    """Create an organization and its admin user; print {"org_id", "user_id", "token"}.

    Idempotent: when this email already administers an organization of that name, that
    one is reused. Migrates the database first.
    """
    from app import migrate
    from app.auth import issue_token

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    migrate.upgrade(settings)
    org_name = org_name.strip()
    if not org_name:
        raise click.BadParameter("must not be empty", param_hint="--org")
    if reason := refused_character(org_name):
        raise click.BadParameter(reason, param_hint="--org")
    org_id, user_id = asyncio.run(_bootstrap(settings, org_name, email))
    result = {
        "org_id": str(org_id),
        "user_id": str(user_id),
        "token": issue_token(settings, user_id=user_id, email=email, ttl_seconds=ttl),
    }
    click.echo(json.dumps(result))


async def _bootstrap(settings: Settings, org_name: str, email: str) -> tuple[uuid.UUID, uuid.UUID]:
    from app.core.database import Database
    from app.users import bootstrap_admin

    database = Database.from_settings(settings)
    try:
        async with database.transaction() as session:
            return await bootstrap_admin(session, org_name=org_name, email=email)
    finally:
        await database.dispose()


# --- schedule -------------------------------------------------------------------------------


@main.group()
def schedule() -> None:
    """Cron schedules: check an expression before you save it."""


@schedule.command()
@click.argument("expression")
@click.option("--tz", "timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option(
    "--after",
    help="Start (exclusive), ISO 8601; without an offset it is read in --tz. Default: now.",
)
@click.option(
    "--count",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="How many fire times to print.",
)
def preview(expression: str, timezone: str, after: str | None, count: int) -> None:
    """Print the next fire times of EXPRESSION, one per line (ISO 8601 with offset).

    EXPRESSION is five fields (minute hour day-of-month month day-of-week) or a macro such
    as @monthly, with Debian cron semantics. Invalid input: message on stderr, exit 2.
    """
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from app.scheduling.cron import CronError, parse

    try:
        cron = parse(expression, timezone)
    except CronError as exc:
        raise click.BadParameter(
            str(exc), param_hint="--tz" if exc.field == "timezone" else "EXPRESSION"
        ) from None
    if after is None:
        start = datetime.now(UTC)
    else:
        try:
            start = datetime.fromisoformat(after)
        except ValueError:
            raise click.BadParameter(
                f"{after!r} is not an ISO 8601 time, e.g. 2027-01-01T00:00:00+00:00",
                param_hint="--after",
            ) from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=ZoneInfo(cron.timezone))
    try:
        moments = cron.fire_times(start, count)  # fewer near the end of the calendar
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--after") from None
    for moment in moments:
        click.echo(moment.isoformat())


# --- providers: credentials and quota -------------------------------------------------------


@main.group()
def providers() -> None:
    """The marketplace providers chosen by AMAZON_PROVIDER and EBAY_PROVIDER."""


@providers.command("check")
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds to wait for each provider.",
)
def providers_check(timeout: float) -> None:
    """Verify the configured credentials and print each provider's remaining quota.

    Spends no quota: Keepa's token status request is free; eBay is asked for an
    application token and for its call counts (Analytics API). One line per provider;
    exit 1 if a check failed.
    """
    settings = _settings()

    async def check() -> list[tuple[str, str, bool, str]]:
        async with httpx.AsyncClient(timeout=timeout) as http:
            return await _check_providers(settings, http)

    results = asyncio.run(check())
    for marketplace, name, ok, detail in results:
        click.echo(f"{marketplace:<7}{name:<8}{'ok' if ok else 'FAILED':<8}{detail}")
    if not all(ok for _, _, ok, _ in results):
        sys.exit(1)


async def _check_providers(
    settings: Settings, http: httpx.AsyncClient
) -> list[tuple[str, str, bool, str]]:
    """(marketplace, provider, ok, detail) for the Amazon and the eBay provider."""
    from app.core.database import Database
    from app.providers.base import ProviderError
    from app.providers.keepa import KeepaAmazonProvider

    results: list[tuple[str, str, bool, str]] = []
    if settings.amazon_provider == "keepa":
        keepa = KeepaAmazonProvider.from_settings(settings, http)
        try:
            tokens = await keepa.token_status()
        except (ProviderError, httpx.HTTPError) as exc:
            results.append(("amazon", "keepa", False, _failure(exc, settings.keepa_api_url)))
        else:
            refill = round(tokens.refill_in.total_seconds())
            results.append(
                (
                    "amazon",
                    "keepa",
                    True,
                    f"KEEPA_API_KEY accepted; {tokens.tokens_left} tokens left, "
                    f"{tokens.refill_rate} more per minute (next refill in {refill}s)",
                )
            )
    else:
        results.append(("amazon", "sample", True, "offline sample data: no credentials"))
    if settings.ebay_provider == "ebay":
        database = Database.from_settings(settings)
        try:
            results.append(await _check_ebay(settings, http, database))
        finally:
            await database.dispose()
    else:
        results.append(("ebay", "sample", True, "offline sample data: no credentials"))
    return results


async def _check_ebay(
    settings: Settings, http: httpx.AsyncClient, database: Database
) -> tuple[str, str, bool, str]:
    from datetime import UTC, datetime

    from app.providers.base import ProviderError
    from app.providers.ebay import EbayBrowseProvider

    ebay = EbayBrowseProvider.from_settings(settings, http, database=database)
    try:
        token = await ebay.access_token()
    except (ProviderError, httpx.HTTPError) as exc:
        return ("ebay", "ebay", False, _failure(exc, settings.ebay_api_url))
    valid = round((token.expires_at - datetime.now(UTC)).total_seconds())
    detail = f"EBAY_CLIENT_ID/SECRET accepted (application token valid {valid}s); "
    try:
        quota = await ebay.browse_quota()
    except (ProviderError, httpx.HTTPError) as exc:
        detail += f"Browse API calls left today unknown ({exc}); "
    else:
        if quota is not None:
            resets = f"{quota.resets_at:%Y-%m-%d %H:%M} UTC" if quota.resets_at else "?"
            detail += (
                f"eBay reports {quota.remaining} of {quota.limit} Browse API calls "
                f"left today (resets {resets}); "
            )
    limit = settings.ebay_daily_call_limit
    try:
        used = await ebay.budget.used()
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        reason = "database not migrated" if isinstance(exc, sa.exc.DBAPIError) else str(exc)
        detail += f"this service's calls today unknown ({reason}); at most {limit} a day"
    else:
        detail += f"this service made {used} of at most {limit} calls today"
    return ("ebay", "ebay", True, f"{detail} (EBAY_DAILY_CALL_LIMIT)")


def _failure(exc: Exception, url: str) -> str:
    if isinstance(exc, httpx.HTTPError):
        return f"cannot reach {url}: {type(exc).__name__}: {exc}"
    return str(exc)


main.add_command(runs)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
