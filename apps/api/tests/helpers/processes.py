"""Test helpers that are not fixtures: temporary PostgreSQL databases, free ports, processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "collection-api")


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    target = make_url(url)
    connection = await asyncpg.connect(
        host=target.host or "127.0.0.1",
        port=target.port or 5432,
        user=target.username or "postgres",
        password=target.password,
        database="postgres",
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def temp_database(base_url: str, label: str) -> Iterator[str]:
    """A new, empty PostgreSQL database next to `base_url`'s, dropped afterwards."""
    base = make_url(base_url)
    name = f"{base.database or 'collection'}_{label}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(base_url, f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment for a child process, without the developer's service settings."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**keep, "LOG_LEVEL": "INFO", **overrides}


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> float:
    """Poll /health until it answers 200; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode} before becoming healthy")
        try:
            if httpx.get(f"{base_url}/health", timeout=1.0).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server at {base_url} not healthy within {timeout}s")


@contextmanager
def tcp_forwarder(port: int, host: str, target_port: int) -> Iterator[None]:
    """Listen on 127.0.0.1:`port` and pass every connection on to `host`:`target_port`
    (a database that "comes up" when the block starts)."""
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.1)
    stopping = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection((host, target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(source, sink), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield
    finally:
        stopping.set()
        acceptor.join()
        listener.close()
