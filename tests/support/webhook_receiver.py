"""A webhook receiver in a process of its own, on loopback, verifying every delivery with `standardwebhooks`.

Run as a script (`python tests/support/webhook_receiver.py [PORT]`) it serves until stopped and
prints `listening PORT` once bound. Tests drive it through `Receiver`: which secrets a
path verifies with, what it answers (status, delay), and what it received. Control
requests go to `/_control/...`; every other POST is a delivery, recorded when it
arrives (before its answer), with which of the path's secrets verified it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

START_TIMEOUT = 10.0


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.secrets: dict[str, list[str]] = {}
        self.script: dict[str, list[tuple[int, float]]] = {}
        self.received: list[dict[str, Any]] = []
        self.in_flight: dict[str, int] = {}
        self.most_in_flight: dict[str, int] = {}
        self.clock_offset = 0.0  # the test moved its own clock (time-machine): verify as of its time


def _verified_with(secrets: list[str], body: bytes, headers: dict[str, str], offset: float) -> list[int]:
    import time_machine
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    verified = []
    # The signed timestamp is checked against the receiver's clock, moved as the sender's was.
    with time_machine.travel(time.time() + offset, tick=False):
        for index, secret in enumerate(secrets):
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            verified.append(index)
    return verified


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            with state.lock:
                answer = {"received": state.received, "most_in_flight": state.most_in_flight}
                self._reply(200, json.dumps(answer).encode())

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.startswith("/_control/"):
                command = json.loads(body)
                with state.lock:
                    if self.path == "/_control/secrets":
                        state.secrets[command["path"]] = list(command["secrets"])
                    elif self.path == "/_control/clock":
                        state.clock_offset = float(command["offset_seconds"])
                    elif self.path == "/_control/script":
                        state.script[command["path"]] = [(int(s), float(d)) for s, d in command["responses"]]
                self._reply(200, b"{}")
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                secrets = list(state.secrets.get(self.path, []))
                queue = state.script.get(self.path) or []
                status, delay = queue.pop(0) if queue else (200, 0.0)
                state.in_flight[self.path] = state.in_flight.get(self.path, 0) + 1
                state.most_in_flight[self.path] = max(
                    state.most_in_flight.get(self.path, 0), state.in_flight[self.path]
                )
                state.received.append(
                    {
                        "path": self.path,
                        "id": headers.get("webhook-id"),
                        "timestamp": headers.get("webhook-timestamp"),
                        "signatures": len((headers.get("webhook-signature") or "").split()),
                        "host": headers.get("host"),
                        "body": body.decode(),
                        "verified_with": _verified_with(secrets, body, headers, state.clock_offset),
                        "status": status,
                        "at": time.time(),
                    }
                )
            try:
                time.sleep(delay)
                self._reply(status, json.dumps({"answer": status}).encode())
            except OSError:
                pass  # the sender gave up (or was killed) while we waited
            finally:
                with state.lock:
                    state.in_flight[self.path] -= 1

    return Handler


class _Server(ThreadingHTTPServer):
    # A dispatcher opens up to a dozen connections at once; the default listen backlog is 5.
    request_queue_size = 64


def serve(port: int) -> None:
    server = _Server(("127.0.0.1", port), _handler(_State()))
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


class Receiver:
    """The receiver process, as the tests see it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Receiver:
        with (self.workdir / "receiver.log").open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, __file__, str(self.port)], stdout=subprocess.PIPE, stderr=log, text=True
            )
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = ""
        while not line.startswith("listening") and time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                raise RuntimeError(f"receiver exited with {self.process.returncode}")
        if not line.startswith("listening"):
            raise RuntimeError("receiver did not start")
        self.port = int(line.split()[1])  # kept: a restart binds the same port again
        return self

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def _control(self, command: str, payload: dict[str, Any]) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/_control/{command}", data=json.dumps(payload).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def clock(self, offset_seconds: float) -> None:
        """Verify signatures as of the receiver's time moved by this much (the test moved its own)."""
        self._control("clock", {"offset_seconds": offset_seconds})

    def secrets(self, path: str, *secrets: str) -> None:
        self._control("secrets", {"path": path, "secrets": list(secrets)})

    def script(self, path: str, *responses: tuple[int, float]) -> None:
        """What the next requests to `path` are answered (status, delay in seconds); then 200 at once."""
        self._control("script", {"path": path, "responses": [list(r) for r in responses]})

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_control/received", timeout=5) as response:
            return dict(json.loads(response.read()))

    def received(self, path: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.state()["received"] if path is None or r["path"] == path]


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
