"""The `collection-api runs` commands: watch a run's progress and export its CSV through a
running service's HTTP API."""

from __future__ import annotations

import sys
import time
import uuid

import click
import httpx

TERMINAL_STATUSES = {"completed", "failed", "cancelled"}


@click.group()
@click.option(
    "--url",
    envvar="COLLECTION_API_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="Base URL of the service (env COLLECTION_API_URL).",
)
@click.option(
    "--token",
    envvar="COLLECTION_API_TOKEN",
    help="Bearer token (env COLLECTION_API_TOKEN); e.g. from `collection-api token`.",
)
@click.option(
    "--org",
    "org_id",
    envvar="COLLECTION_API_ORG",
    help="Organization id sent as X-Org-Id, if you have several (env COLLECTION_API_ORG).",
)
@click.pass_context
def runs(ctx: click.Context, url: str, token: str | None, org_id: str | None) -> None:
    """Watch and export collection runs of a running service."""
    ctx.obj = {"url": url.rstrip("/"), "token": token, "org_id": org_id}


def _client(ctx: click.Context) -> httpx.Client:
    """An HTTP client for the service named by the `runs` group's options."""
    options = ctx.find_object(dict)
    assert options is not None
    if options["token"] is None:
        raise click.UsageError("a token is needed: pass --token or set COLLECTION_API_TOKEN")
    headers = {"Authorization": f"Bearer {options['token']}"}
    if options["org_id"]:
        headers["X-Org-Id"] = options["org_id"]
    http = httpx.Client(base_url=options["url"], headers=headers, timeout=30.0)
    ctx.call_on_close(http.close)
    return http


def _api_get(http: httpx.Client, path: str, **params: str) -> httpx.Response:
    try:
        response = http.get(path, params=params)
    except httpx.TransportError as exc:
        raise click.ClickException(f"cannot reach {http.base_url}: {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise click.ClickException(f"HTTP {response.status_code}: {detail}")
    return response


def describe_progress(run: dict[str, object]) -> tuple[float, str]:
    """How far a run is (0..1 within its current phase) and a one-line summary."""
    progress = run["progress"]
    assert isinstance(progress, dict)
    phase = run.get("phase")
    if phase == "ebay" or run["status"] == "completed":
        done, total = progress["products_searched"], progress["products_found"]
        what = f"eBay {done}/{total} products"
    else:
        done, total = progress["categories_done"], progress["categories_total"]
        what = f"Amazon {done}/{total} categories"
    fraction = done / total if total else 0.0
    summary = (
        f"{run['status']:<10} {what}, {progress['products_found']} products, "
        f"{progress['listings_found']} listings, {progress['sellers_found']} sellers"
    )
    if run.get("resumes_at"):
        limit = run.get("waiting_for") or "provider quota"
        summary += f"; waiting for {limit} until {run['resumes_at']}"
    return fraction, summary


@runs.command()
@click.argument("run_id", type=click.UUID)
@click.option(
    "--interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between progress polls.",
)
@click.pass_context
def watch(ctx: click.Context, run_id: uuid.UUID, interval: float) -> None:
    """Show a run's progress until it ends; exit 0 if it completed, 1 otherwise."""
    http = _client(ctx)
    tty = sys.stdout.isatty()
    last = ""
    while True:
        run = _api_get(http, f"/collection/runs/{run_id}").json()
        fraction, summary = describe_progress(run)
        width = 30
        filled = round(fraction * width)
        line = f"[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%} {summary}"
        if tty:
            click.echo(f"\r{line}\x1b[K", nl=False)
        elif line != last:
            click.echo(line)
        last = line
        if run["status"] in TERMINAL_STATUSES:
            if tty:
                click.echo()
            if run.get("error"):
                click.echo(f"error: {run['error']}", err=True)
            sys.exit(0 if run["status"] == "completed" else 1)
        time.sleep(interval)


@runs.command()
@click.argument("run_id", type=click.UUID)
@click.option(
    "--kind",
    type=click.Choice(["sellers", "listings"]),
    default="sellers",
    show_default=True,
    help="The seller ranking, or every listing.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    required=True,
    help="File to write the CSV to ('-' for standard output).",
)
@click.pass_context
def export(ctx: click.Context, run_id: uuid.UUID, kind: str, output: str) -> None:
    """Download a run's sellers or listings as CSV (streamed to the file)."""
    http = _client(ctx)
    try:
        with http.stream(
            "GET", f"/collection/runs/{run_id}/export.csv", params={"kind": kind}
        ) as response:
            if response.status_code >= 400:
                response.read()
                try:
                    detail = response.json().get("detail", response.text)
                except ValueError:
                    detail = response.text
                raise click.ClickException(f"HTTP {response.status_code}: {detail}")
            with click.open_file(output, "wb") as sink:
                written = 0
                for chunk in response.iter_bytes():
                    sink.write(chunk)
                    written += len(chunk)
    except httpx.TransportError as exc:
        raise click.ClickException(f"cannot reach {http.base_url}: {exc}") from None
    if output != "-":
        click.echo(f"wrote {written} bytes to {output}", err=True)
