"""The suite runs while ``covreq serve``'s default port is taken (tests/conftest.py holds it, as
README command 1's service would), so every test that serves must pick a free port."""
from __future__ import annotations

import errno
import socket

import pytest

from covreq.cli import build_parser


def test_the_default_port_of_covreq_serve_is_taken_while_the_suite_runs() -> None:
    port = build_parser().parse_args(["serve"]).port
    with pytest.raises(OSError) as refused, socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
    assert refused.value.errno == errno.EADDRINUSE
