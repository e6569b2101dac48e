"""The embedded cluster's worker processes are forked from a forkserver that preloads modules."""

from __future__ import annotations

import multiprocessing.forkserver
import os
import subprocess
import sys
from pathlib import Path

import pytest
from distributed import Client

from volumetric.engine import cluster as cluster_module
from volumetric.engine.cluster import WORKER_ENVIRON, local_cluster
from volumetric.engine import forkserver as forkserver_module
from volumetric.engine.forkserver import forkserver_available

pytestmark = pytest.mark.skipif(not forkserver_available(), reason="no forkserver here")


def _worker_facts() -> dict:
    import os
    import sys

    return {"parent": os.getppid(), "zarr": "zarr" in sys.modules, "hash": hash("volumetric"),
            "environ": {key: os.environ.get(key) for key in (*WORKER_KEYS, "VOLUMETRIC_PROBE")}}


WORKER_KEYS = tuple(WORKER_ENVIRON)


def _facts_of_workers(**kwargs) -> list[dict]:
    with local_cluster(2, dashboard_address=":0", **kwargs) as cluster, Client(cluster) as client:
        return list(client.run(_worker_facts).values())


def _server_pid() -> int:
    from multiprocessing import forkserver

    return forkserver._forkserver._forkserver_pid  # the server this process started


def test_workers_are_forks_of_one_server_and_see_later_variables(monkeypatch):
    monkeypatch.setenv("VOLUMETRIC_PROBE", "first")
    first = _facts_of_workers()
    server = _server_pid()
    assert server not in (None, os.getpid())
    for facts in first:
        assert facts["parent"] == server
        assert facts["zarr"]  # imported by the server (this module does not import it)
        assert facts["environ"]["VOLUMETRIC_PROBE"] == "first"
    assert len({facts["hash"] for facts in first}) == 1  # one hash seed for all workers

    # a variable changed after the server started reaches the next cluster's workers
    monkeypatch.setenv("VOLUMETRIC_PROBE", "second")
    second = _facts_of_workers()
    assert _server_pid() == server
    assert {facts["environ"]["VOLUMETRIC_PROBE"] for facts in second} == {"second"}


FRESH = """
from distributed import Client
from volumetric.engine.cluster import local_cluster
import tests.test_forkserver as t
if __name__ == "__main__":
    with local_cluster(2, dashboard_address=":0") as cluster, Client(cluster) as client:
        print(sorted(str(f["environ"]) for f in client.run(t._worker_facts).values()))
"""


def test_a_fresh_process_gives_its_workers_the_worker_environment(tmp_path):
    # in a process that has not yet started a cluster (this one has: distributed copies its
    # own worker settings into the environment of the process that starts workers)
    environ = {k: v for k, v in os.environ.items() if k not in WORKER_KEYS}
    script = tmp_path / "fresh.py"
    script.write_text(FRESH)
    root = Path(__file__).parent.parent
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=root, env={**environ, "PYTHONPATH": str(root)}, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = {**{k: str(v) for k, v in WORKER_ENVIRON.items()}, "VOLUMETRIC_PROBE": None}
    assert done.stdout.strip() == str([str(expected)] * 2)


def _no_socket_folder() -> None:
    raise FileNotFoundError("No usable temporary directory found")


@pytest.mark.parametrize("why", ["platform", "start fails"])
def test_without_a_forkserver_workers_are_spawned(why, monkeypatch):
    if why == "platform":
        monkeypatch.setattr(forkserver_module, "forkserver_available", lambda: False)
    else:
        monkeypatch.setattr(multiprocessing.forkserver, "ensure_running", _no_socket_folder)
    for facts in _facts_of_workers():
        assert facts["parent"] == os.getpid()  # the nanny, in this process, spawned it
        assert facts["environ"]["MALLOC_MMAP_THRESHOLD_"] == str(
            WORKER_ENVIRON["MALLOC_MMAP_THRESHOLD_"])


def test_threads_and_gpus_start_no_server(monkeypatch):
    started = []
    monkeypatch.setattr(cluster_module, "start_forkserver", started.append)
    cluster_module.prepare_embedded_workers(None, "local:2", in_process=True)
    cluster_module.prepare_embedded_workers(None, "local:2", gpus=1)
    cluster_module.prepare_embedded_workers(None, "tcp://127.0.0.1:1")
    assert started == []
    cluster_module.prepare_embedded_workers(None, "local:2")
    assert len(started) == 1
