"""The embedded PostgreSQL of the local stack and the tests starts on a busy machine."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cardstream.local import embedded_pg
from cardstream.local.embedded_pg import EmbeddedPostgres
from cardstream.local.ports import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another process holds (as an outgoing connection or a server may)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_picked_port_taken_before_the_server_binds_it_is_replaced(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race: free_port() answered a port that someone else bound a moment later.
    answers = iter([taken_port])
    monkeypatch.setattr(
        embedded_pg, "free_port", lambda host="127.0.0.1": next(answers, None) or free_port(host)
    )
    server = EmbeddedPostgres(tmp_path / "data", settings=embedded_pg.SCRATCH_SETTINGS)
    assert server.port == taken_port
    server.start()
    try:
        assert server.port != taken_port
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()


def test_a_port_given_by_the_caller_is_never_changed(tmp_path: Path, taken_port: int) -> None:
    server = EmbeddedPostgres(
        tmp_path / "data", port=taken_port, settings=embedded_pg.SCRATCH_SETTINGS
    )
    with pytest.raises(RuntimeError, match="did not start"):
        server.start()
    assert server.port == taken_port
