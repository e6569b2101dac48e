"""A misbehaving cluster ends a run in bounded time, in one line, without a half-made output."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from volumetric.engine.cluster import CLUSTER_ENV, CONNECT_TIMEOUT_ENV, check_cluster, connect
from volumetric.errors import ClusterError

VOL = str(Path(sys.executable).with_name("vol"))
HTTP_GARBAGE = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
REFUSED = r"(is not a dask scheduler|did not answer within 1 s: is it a dask scheduler\?)$"


@contextmanager
def fake_server(answer: bytes | None) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts connections and sends ``answer``, or nothing."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)
            if answer is not None:
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def finished_within(seconds: float, call: Callable[[], Any]) -> BaseException | None:
    """Run ``call()`` in a thread; fail unless it ends within ``seconds``; return what it raised."""
    raised: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            raised.append(None)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert raised, f"still running after {seconds} s"
    return raised[0]


@pytest.fixture
def short_timeout(monkeypatch):
    monkeypatch.delenv(CLUSTER_ENV, raising=False)
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, "1")


@pytest.mark.parametrize("answer", [None, HTTP_GARBAGE], ids=["silent", "http"])
def test_check_cluster_refuses_a_server_that_is_no_scheduler(short_timeout, answer):
    with fake_server(answer) as address:
        with pytest.raises(ClusterError, match=f"^the server at {address} {REFUSED}"):
            check_cluster(None, address)


def test_check_cluster_refuses_the_dashboard_port(short_timeout, client):
    address = f"127.0.0.1:{client.cluster.scheduler.http_server.port}"
    with pytest.raises(ClusterError, match=f"^the server at {address} {REFUSED}"):
        check_cluster(None, address)


def test_connect_to_a_silent_server_gives_up(short_timeout):
    def enter() -> None:
        with connect(address, quiet=True):
            pass

    with fake_server(None) as address:
        raised = finished_within(30, enter)
    assert isinstance(raised, ClusterError)
    assert str(raised) == (f"the server at {address} did not answer within 1 s: "
                           "is it a dask scheduler?")


@pytest.mark.parametrize("answer", [None, HTTP_GARBAGE], ids=["silent", "http"])
def test_cli_refuses_a_server_that_is_no_scheduler_and_writes_nothing(tmp_path, answer):
    np.save(tmp_path / "a.npy", np.zeros((4, 8, 8), np.uint8))
    env = {k: v for k, v in os.environ.items() if k != CLUSTER_ENV}
    env[CONNECT_TIMEOUT_ENV] = "1"
    with fake_server(answer) as address:
        result = subprocess.run(
            [VOL, "convert", str(tmp_path / "a.npy"), str(tmp_path / "o.zarr"), "--cluster",
             address], env=env, capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"vol: error: the server at {address} ")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "o.zarr").exists()


@pytest.mark.parametrize("operation", ["predict", "discover", "evaluate"])
def test_operations_check_the_cluster_before_connecting(short_timeout, tmp_path, monkeypatch,
                                                        operation):
    import importlib

    module = importlib.import_module(f"volumetric.ops.{operation}")

    def no_session(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("connected before the cluster was checked")

    monkeypatch.setattr(module, "session", no_session)
    raw = tmp_path / "a.npy"
    np.save(raw, np.zeros((4, 8, 8), np.uint8))
    call = {
        "predict": lambda: module.predict(str(raw), str(tmp_path / "p.zarr"),
                                          model="predict_models:tiny", device="cpu",
                                          cluster=address),
        "discover": lambda: module.discover(str(raw), str(tmp_path / "c.json"), seeds=[(0, 0, 0)],
                                            cluster=address),
        "evaluate": lambda: module.evaluate(str(raw), str(raw), cluster=address),
    }[operation]
    with fake_server(None) as address:
        with pytest.raises(ClusterError, match=f"^the server at {address} "):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]
