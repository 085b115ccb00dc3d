"""A decision-log sink on loopback for the tests: takes gzip JSON Lines POSTs, and can answer 503
or go away (connection refused) and come back on the same port."""
from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from serving import free_port


class Sink:
    """Records every line delivered (``lines``), in arrival order; ``status`` is what it answers."""

    def __init__(self) -> None:
        self.port, self.status = free_port(), 200
        self.lines: list[bytes] = []
        self.posts: list[dict[str, str]] = []  # the headers of every POST, answered or not
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/logs"

    def up(self) -> None:
        """Listen (again) on the sink's port."""
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.posts.append(dict(self.headers))
                if sink.status == 200:
                    sink.lines.extend(gzip.decompress(body).splitlines(keepends=True))
                self.send_response(sink.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop listening: connections are refused until :meth:`up`."""
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
