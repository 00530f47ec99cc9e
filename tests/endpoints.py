"""Tiny endpoints on 127.0.0.1 for the tests of bounded calls (stdlib only, shut down by their context).

- :class:`SilentEndpoint` accepts every connection and never answers: a
  hung proxy, or a server stopped with SIGSTOP. Its connections are held
  open until it closes.
- :class:`ScriptedSWF` answers each SWF request from a script, in order:
  ``(status, body dict)``, or ``"silent"`` (hold the request unanswered).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading


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


class ScriptedSWF:
    """Answers each request from ``script`` in order, then ``then``; ``requests`` lists (operation, body)."""

    def __init__(self, *script, then=(200, {})):
        self.script = list(script)
        self.then = then
        self.requests: list[tuple[str, dict]] = []
        self.released = threading.Event()
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                endpoint.requests.append((self.headers.get("X-Amz-Target", "").rpartition(".")[2], body))
                step = endpoint.script.pop(0) if endpoint.script else endpoint.then
                if step == "silent":
                    endpoint.released.wait(30)
                    self.close_connection = True
                    return
                status, answer = step
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

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.requests]

    def __enter__(self) -> ScriptedSWF:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
