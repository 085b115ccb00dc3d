"""Real HTTP servers on loopback for the tests that play an EHR, a key server, a collector or a
sink: a threaded server on a free port (or a given one), serving from a daemon thread."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps http.server's access lines out of the test output."""

    def log_message(self, *args: Any) -> None:
        pass

    def send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        """Answer ``status`` with ``body`` (its Content-Length set) and ``headers``."""
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start(handler: type[BaseHTTPRequestHandler], port: int = 0) -> ThreadingHTTPServer:
    """A server of ``handler`` on 127.0.0.1 (a free port unless ``port``), already serving."""
    ThreadingHTTPServer.allow_reuse_address = True  # a sink brought back up on its port
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    # a short poll: stop() waits up to one poll interval for the serving loop (the default 0.5 s, per test)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server


def origin(server: ThreadingHTTPServer) -> str:
    """``http://127.0.0.1:<port>`` of a started server."""
    return f"http://127.0.0.1:{server.server_address[1]}"


def stop(server: ThreadingHTTPServer) -> None:
    """Stop serving and close the listening socket."""
    server.shutdown()
    server.server_close()
