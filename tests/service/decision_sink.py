"""A decision-log sink on loopback for the tests: takes gzip JSON Lines POSTs, and can answer 503
or go away (connection refused) and come back on the same port."""
from __future__ import annotations

import gzip
from http.server import ThreadingHTTPServer

import loopback
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

        class Handler(loopback.QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.posts.append(dict(self.headers))
                if sink.status == 200:
                    sink.lines.extend(gzip.decompress(body).splitlines(keepends=True))
                self.send(sink.status)

        self._server = loopback.start(Handler, self.port)

    def down(self) -> None:
        """Stop listening: connections are refused until :meth:`up`."""
        if self._server:
            loopback.stop(self._server)
            self._server = None
