"""Tiny endpoints on 127.0.0.1 for the tests of calls on the wire (shut down by their context).

- :class:`SilentEndpoint` accepts every connection and never answers: a
  hung proxy, or a server stopped with SIGSTOP. Its connections are held
  open until it closes.
- :class:`ScriptedEndpoint` answers each SWF request from a script, in
  order, and records what it was asked.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from typing import NamedTuple

from caravand import swf


class SilentEndpoint:
    """Listens on 127.0.0.1 and accepts, never reads, never answers; ``accepted`` counts connections."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def accepted(self) -> int:
        return len(self.connections)

    def _accept(self) -> None:
        self.listener.settimeout(0.05)
        while not self.closed.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(connection)

    def __enter__(self) -> SilentEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closed.set()
        self.thread.join(5)
        for connection in [self.listener, *self.connections]:
            connection.close()


class Request(NamedTuple):
    """One request a ScriptedEndpoint received: SWF's operation name, when (``time.monotonic()``), the JSON body."""

    operation: str
    at: float
    body: dict


class ScriptedEndpoint:
    """An SWF endpoint on 127.0.0.1 that answers each request from a script, in order.

    Steps: ``"ok"`` (200, ``{}``), ``"throttle"`` (400 ThrottlingException),
    ``"500"`` (InternalFailure), ``"hang"`` (never answers: holds the
    request until the endpoint closes, then drops the connection), or
    ``(status, body dict)``. When the script runs out, ``then`` answers
    every further request. ``requests`` lists each :class:`Request`;
    ``url`` (or ``endpoint()``) is where to point a client. Use it as a
    context manager: it always shuts down its threads.
    """

    THROTTLE = (400, {"__type": "com.amazon.coral.availability#ThrottlingException", "message": "Rate exceeded"})
    FAILURE = (500, {"__type": "com.amazon.coral.service#InternalFailure", "message": "boom"})
    #: The steps named by a word ("hang" aside); any other step is a (status, body dict).
    WORDS = {"ok": (200, {}), "throttle": THROTTLE, "500": FAILURE}
    #: A held request is let go after this long even if the endpoint is still open.
    HANG_BOUND = 30.0

    def __init__(self, *script, then="ok"):
        for step in [*script, then]:
            if isinstance(step, str) and step not in self.WORDS and step != "hang":
                raise ValueError(f"step {step!r}: expected one of {', '.join(self.WORDS)}, hang, or (status, body)")
        self.script = list(script)
        self.then = then
        self.requests: list[Request] = []
        self.released = threading.Event()
        self.lock = threading.Lock()  # a request's record and its step, taken together
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                with endpoint.lock:
                    endpoint.requests.append(Request(operation, time.monotonic(), body))
                    step = endpoint.script.pop(0) if endpoint.script else endpoint.then
                if step == "hang":
                    endpoint.released.wait(endpoint.HANG_BOUND)
                    self.close_connection = True
                    return
                status, answer = endpoint.WORDS[step] if isinstance(step, str) else step
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> ScriptedEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def operations(self) -> list[str]:
        return [request.operation for request in self.requests]

    def endpoint(self, **kwargs) -> swf.Endpoint:
        return swf.Endpoint(endpoint_url=self.url, region="us-east-1", **kwargs)
