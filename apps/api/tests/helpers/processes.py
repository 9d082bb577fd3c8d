"""Processes of the service: the `collection-api` command, servers on free ports, waiting
for them to be healthy, and a TCP forwarder that plays a database coming up."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "collection-api")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment for a child process, without the developer's service settings.

    PYTHONPATH is kept: a child then imports the same code as the tests (a checkout's
    `src` given there, rather than the one the virtualenv was installed from)."""
    kept = ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH")
    keep = {k: v for k, v in os.environ.items() if k in kept}
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


class Server:
    """`collection-api serve` on a free port (`args` added to its command line, such as
    `--role api`), its output in a log file under `tmp_path`."""

    def __init__(
        self, env: dict[str, str], tmp_path: Path, name: str = "server", *args: str
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"{name}-{self.port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [CLI, *self.command(), *args], env=env, stdout=log, stderr=log
            )

    def command(self) -> list[str]:
        return ["serve", "--port", str(self.port)]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def logs(self) -> str:
        return self.log.read_text()


class Worker(Server):
    """`collection-api worker`, its probes (/health, /ready, /metrics) on a free port."""

    def command(self) -> list[str]:
        return ["worker", "--health-port", str(self.port)]


def bootstrap(env: dict[str, str]) -> dict[str, str]:
    """`collection-api bootstrap` of the organization Acme; its JSON output."""
    result = subprocess.run(
        [CLI, "bootstrap", "--org", "Acme", "--email", "boss@example.com"],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    data: dict[str, str] = json.loads(result.stdout)
    return data


def run_cli(env: dict[str, str], *args: str) -> str:
    """Run `collection-api *args` with `env`; its standard output."""
    result = subprocess.run([CLI, *args], env=env, capture_output=True, check=True, timeout=60)
    return result.stdout.decode().strip()
