"""A misbehaving cluster ends a run in bounded time, in one line, without a half-made output."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dask_processes import dask_processes as started_processes

from volumetric.engine import run_blocks
from volumetric.engine.cluster import check_cluster, connect, local_cluster, workers_cap
from volumetric.engine.scheduler import (
    CLUSTER_ENV,
    CONNECT_TIMEOUT_ENV,
    SCHEDULER_TIMEOUT_ENV,
    scheduler_timeout,
)
from volumetric.errors import ClusterError
from volumetric.geometry import BlockGrid, Box

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
    import volumetric
    import volumetric.engine.operation

    def no_session(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("connected before the cluster was checked")

    monkeypatch.setattr(volumetric.engine.operation, "session", no_session)
    raw = tmp_path / "a.npy"
    np.save(raw, np.zeros((4, 8, 8), np.uint8))
    call = {
        "predict": lambda run: volumetric.predict(
            str(raw), str(tmp_path / "p.zarr"),
            volumetric.PredictOptions("predict_models:tiny", device="cpu"), run=run),
        "discover": lambda run: volumetric.discover(str(raw), str(tmp_path / "c.json"),
                                                    seeds=[(0, 0, 0)], run=run),
        "evaluate": lambda run: volumetric.evaluate(str(raw), str(raw), run=run),
    }[operation]
    with fake_server(None) as address:
        with pytest.raises(ClusterError, match=f"^the server at {address} "):
            call(volumetric.RunOptions(cluster=address))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


@dataclass(frozen=True)
class Nap:
    """A block task that takes a while."""

    seconds: float

    def __call__(self, box: Box) -> None:
        time.sleep(self.seconds)


@pytest.fixture
def dask_processes(tmp_path):
    """A dask scheduler and one one-thread worker in processes of their own (test tasks import)."""
    with started_processes(tmp_path, 1, nanny=False) as started:
        yield started.address, started.scheduler, started.workers[0]


def test_a_frozen_scheduler_ends_the_job(dask_processes, monkeypatch):
    from distributed import Client

    address, scheduler, _ = dask_processes
    monkeypatch.setenv(SCHEDULER_TIMEOUT_ENV, "1")
    blocks = list(BlockGrid((40,), (1,)).boxes())  # 8 s of work on the one worker thread
    with Client(address, timeout="5s") as client:
        freeze = threading.Timer(1.0, os.kill, (scheduler.pid, signal.SIGSTOP))
        freeze.start()
        try:
            raised = finished_within(
                30, lambda: run_blocks(Nap(0.2), blocks, client=client, progress=False))
        finally:
            freeze.cancel()
            os.kill(scheduler.pid, signal.SIGCONT)
    assert isinstance(raised, ClusterError), raised
    assert str(raised) == (f"the dask scheduler at {address} stopped answering (nothing for "
                           "1 s); rerun the same command to resume")



def test_scheduler_timeout_can_be_set(monkeypatch):
    monkeypatch.delenv(SCHEDULER_TIMEOUT_ENV, raising=False)
    assert scheduler_timeout() == 60
    monkeypatch.setenv(SCHEDULER_TIMEOUT_ENV, "2.5")
    assert scheduler_timeout() == 2.5
    monkeypatch.setenv(SCHEDULER_TIMEOUT_ENV, "never")
    with pytest.raises(ClusterError, match=SCHEDULER_TIMEOUT_ENV):
        scheduler_timeout()


def test_cli_lost_scheduler_is_one_line(dask_processes, tmp_path):
    from distributed import Client

    address, scheduler, worker = dask_processes
    np.save(tmp_path / "a.npy", np.zeros((16, 32, 32), np.uint8))
    os.kill(worker.pid, signal.SIGSTOP)  # no task finishes before the scheduler is gone
    env = {k: v for k, v in os.environ.items() if k != CLUSTER_ENV}
    run = subprocess.Popen(
        [VOL, "convert", str(tmp_path / "a.npy"), str(tmp_path / "o.zarr"), "--chunks", "8,8,8",
         "--cluster", address], env=env, stderr=subprocess.PIPE, text=True)
    try:
        with Client(address, timeout="5s") as client:
            deadline = time.monotonic() + 60
            while not any(client.processing().values()):
                assert time.monotonic() < deadline and run.poll() is None, "no task started"
                time.sleep(0.1)
        scheduler.kill()
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == (f"vol: error: lost the dask scheduler at {address}; "
                                       "rerun the same command to resume")


def test_workers_cap_is_the_cores_and_the_memory_of_the_machine():
    gib = 2**30
    assert workers_cap(cores=2, memory=23 * gib) == 2
    assert workers_cap(cores=64, memory=8 * gib + gib // 2) == 8
    assert workers_cap(cores=4, memory=gib // 2) == 1


def test_too_many_workers_are_capped_with_a_warning(monkeypatch, caplog):
    import distributed

    started: list[int] = []

    class Recorder:
        def __init__(self, n_workers: int, **kwargs: Any):
            started.append(n_workers)

    monkeypatch.setattr(distributed, "LocalCluster", Recorder)
    monkeypatch.setattr(logging.getLogger("volumetric"), "propagate", True)  # vol turns it off
    local_cluster(1000)
    assert started and 1 <= started[0] <= (os.cpu_count() or 1)
    assert "--workers 1000 is more than this machine holds" in caplog.text
    assert caplog.text.rstrip().endswith(f"using {started[0]}")
    local_cluster(1)
    assert started[1] == 1


def test_the_embedded_cluster_listens_on_this_machine_only(monkeypatch):
    import psutil

    monkeypatch.delenv(CLUSTER_ENV, raising=False)
    with connect(workers=1, quiet=True) as client:
        dashboard = client.cluster.scheduler.http_server.port
        scheduler = int(client.scheduler.address.rsplit(":", 1)[1])
        listening = {(c.laddr.ip, c.laddr.port)
                     for c in psutil.Process().net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN}
    assert {port for _, port in listening} >= {dashboard, scheduler}
    assert {ip for ip, port in listening if port in (dashboard, scheduler)} == {"127.0.0.1"}
    assert client.dashboard_link.startswith("http://127.0.0.1:")


def test_a_result_the_frozen_scheduler_never_hands_over_ends_the_job(client, monkeypatch):
    """A task finished just before the freeze: fetching its result asks the scheduler too."""
    from volumetric.engine.run import _Running

    class Unfetchable:
        def result(self, timeout=None):
            assert timeout == 1.0  # never an unbounded wait
            raise TimeoutError

    monkeypatch.setenv(SCHEDULER_TIMEOUT_ENV, "1")
    with pytest.raises(ClusterError, match="stopped answering"):
        _Running(client).result(Unfetchable())


def test_a_result_lost_with_the_scheduler_is_one_line(client):
    """The scheduler went away while a finished task's result was being fetched."""
    from distributed.comm import CommClosedError

    from volumetric.engine.cluster import lost_is_one_line
    from volumetric.engine.run import _Running

    class Unreachable:
        def result(self, timeout=None):
            raise CommClosedError("in <TCP (closed) ConnectionPool.gather>: reset by peer")

    address = client.scheduler.address
    with pytest.raises(ClusterError) as info:
        _Running(client).result(Unreachable())
    assert str(info.value) == (f"lost the dask scheduler at {address}; rerun the same command "
                               "to resume")
    with pytest.raises(ClusterError) as info, lost_is_one_line(client):
        raise CommClosedError("while listing the workers")
    assert str(info.value).startswith(f"lost the dask scheduler at {address};")
