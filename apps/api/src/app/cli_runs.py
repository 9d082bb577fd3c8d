"""The `collection-api runs` commands: watch a run's progress and export its CSV through a
running service's HTTP API."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any, NoReturn

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
        _fail(response)
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


STREAM_TIMEOUT = httpx.Timeout(30.0, read=60.0)
"""A stream is silent at most ~15 s (the server's keep-alive comments): 60 s means lost."""


class StreamCutError(Exception):
    """A run's event stream closed before its `end` event."""


def _fail(response: httpx.Response) -> NoReturn:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise click.ClickException(f"HTTP {response.status_code}: {detail}")


def _stream(http: httpx.Client, run_id: uuid.UUID) -> Iterator[dict[str, Any]]:
    """The run's states from its event stream (GET /collection/runs/{id}/events), until
    the stream ends; an HTTP error is raised as the API's message."""
    path = f"/collection/runs/{run_id}/events"
    with http.stream("GET", path, timeout=STREAM_TIMEOUT) as response:
        if response.status_code >= 400:
            response.read()
            _fail(response)
        event, data = "message", []
        for line in response.iter_lines():
            if line:  # a field; comments (":") keep the connection alive
                name, _, value = line.partition(":")
                if name == "event":
                    event = value.strip()
                elif name == "data":
                    data.append(value.removeprefix(" "))
                continue
            if event == "run" and data:
                yield json.loads("\n".join(data))
            elif event == "end":
                return
            event, data = "message", []
    raise StreamCutError(path)  # no `end`: the replica went away (e.g. it shuts down)


def _polled(http: httpx.Client, run_id: uuid.UUID, interval: float) -> Iterator[dict[str, Any]]:
    """The run's state every `interval` seconds, for ever."""
    while True:
        yield _api_get(http, f"/collection/runs/{run_id}").json()
        time.sleep(interval)


def _states(http: httpx.Client, run_id: uuid.UUID, interval: float) -> Iterator[dict[str, Any]]:
    """The run's states as they change: streamed; when the stream breaks, reconnected
    (after `interval`), and polled after three breaks in a row."""
    breaks = 0
    while breaks < 3:
        try:
            for state in _stream(http, run_id):
                breaks = 0
                yield state
            return
        except (httpx.TransportError, httpx.StreamError, StreamCutError):
            breaks += 1
            time.sleep(interval)
    click.echo("the event stream keeps breaking: polling instead", err=True)
    yield from _polled(http, run_id, interval)


@runs.command()
@click.argument("run_id", type=click.UUID)
@click.option(
    "--interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between polls, when the event stream cannot be used (--poll, or it breaks).",
)
@click.option("--poll", is_flag=True, help="Poll the run instead of following its event stream.")
@click.pass_context
def watch(ctx: click.Context, run_id: uuid.UUID, interval: float, poll: bool) -> None:
    """Show a run's progress as it changes, until it ends; exit 0 if it completed, 1
    otherwise. Follows the run's event stream (one request for the whole run)."""
    http = _client(ctx)
    tty = sys.stdout.isatty()
    last = ""
    states = _polled(http, run_id, interval) if poll else _states(http, run_id, interval)
    try:
        for run in states:
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
    except httpx.TransportError as exc:
        raise click.ClickException(f"cannot reach {http.base_url}: {exc}") from None
    raise click.ClickException(
        "the run's stream ended before the run did: it was deleted, or your access to it ended"
    )


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
