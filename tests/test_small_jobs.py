"""Small jobs on the embedded cluster run their workers as threads of this process.

Starting worker processes takes longer than a small job; such a job (at most
``SMALL_JOB_BYTES`` of Zarr or .npy input) runs on workers that are threads
of the calling process, with the same results, journal and resume as on
worker processes. HDF5, TIFF and video inputs are always read from worker
processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from image_files import write_image
from interruption import killed_before_completion
import volumetric.engine.cluster as cluster_module
from volumetric.engine import RunOptions
from volumetric.engine.cluster import connect
from volumetric.io.ome import open_image
from volumetric.io.sources import open_source
from volumetric.ops.common import SMALL_JOB_BYTES, small_job
from volumetric.ops.convert import convert
from volumetric.ops.distance import distance


def _mask() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.random((20, 24, 28)) < 0.01).astype(np.uint8)


@pytest.fixture
def started(monkeypatch):
    """The ``processes`` argument of every embedded cluster started during the test."""
    calls: list[bool] = []
    real = cluster_module.local_cluster

    def recorded(*args, **kwargs):
        calls.append(kwargs.get("processes", True))
        return real(*args, **kwargs)

    monkeypatch.delenv("VOLUMETRIC_CLUSTER", raising=False)
    monkeypatch.setattr(cluster_module, "local_cluster", recorded)
    return calls


def _files(store: Path) -> dict[str, bytes]:
    """Every chunk file of level 0, by its name inside the array."""
    level = store / "0"
    return {str(p.relative_to(level)): p.read_bytes()
            for p in sorted(level.rglob("*")) if p.is_file()}


def test_small_jobs_are_small_thread_safe_inputs(tmp_path):
    small = open_source(write_image(tmp_path / "small.zarr", _mask(), chunks=(8, 8, 8)))
    big_side = round((SMALL_JOB_BYTES * 2) ** (1 / 3)) + 1
    zarr.create_array(str(tmp_path / "big.zarr"), shape=(big_side,) * 3, chunks=(64,) * 3,
                      dtype="uint8")  # no chunk written: only its size counts
    big = open_source(str(tmp_path / "big.zarr"), axes="zyx")
    with h5py.File(tmp_path / "small.h5", "w") as f:
        f["data"] = _mask()
    hdf5 = open_source(str(tmp_path / "small.h5"))
    np.save(tmp_path / "small.npy", _mask())
    npy = open_source(str(tmp_path / "small.npy"))

    assert small_job(small) and small_job(npy) and small_job(small, npy)
    assert big.nbytes > SMALL_JOB_BYTES and not small_job(big)
    assert not small_job(small, big)
    assert not small_job(hdf5)  # HDF5 is read from worker processes only
    assert not small_job(small, hdf5)


def test_an_in_process_cluster_runs_threads_of_this_process_on_127_0_0_1(monkeypatch):
    monkeypatch.delenv("VOLUMETRIC_CLUSTER", raising=False)
    with connect("local:2", quiet=True, in_process=True) as client:
        pids = client.run(os.getpid)
        assert len(pids) == 2 and set(pids.values()) == {os.getpid()}
        assert all(address.startswith("tcp://127.0.0.1:") for address in pids)
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        assert client.submit(sum, [1, 2, 3]).result() == 6


def test_small_distance_on_threads_equals_worker_processes(client, tmp_path, started):
    mask = write_image(tmp_path / "mask.zarr", _mask(), voxel_size=(2.0, 1.0, 1.0),
                       chunks=(8, 8, 8))
    on_threads = distance(mask, str(tmp_path / "threads.zarr"), clip=3.0,
                          run=RunOptions(block_bytes=1, cluster="local:2", progress=False))
    on_processes = distance(mask, str(tmp_path / "processes.zarr"), clip=3.0,
                            run=RunOptions(block_bytes=1, client=client, progress=False))
    assert started == [False]  # one embedded cluster, of threads
    assert on_threads.blocks == on_processes.blocks > 1
    threads, processes = _files(tmp_path / "threads.zarr"), _files(tmp_path / "processes.zarr")
    assert threads and threads == processes


def test_hdf5_input_starts_worker_processes(tmp_path, started):
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["data"] = _mask()
    report = convert(str(tmp_path / "m.h5"), str(tmp_path / "m.zarr"), axes="zyx",
                     run=RunOptions(cluster="local:1", progress=False))
    assert started == [True]
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "m.zarr" / "0"))[...], _mask())
    assert report.image.complete


def test_an_interrupted_small_job_resumes_on_threads(tmp_path, started):
    mask = write_image(tmp_path / "mask.zarr", _mask(), chunks=(8, 8, 8))
    out = tmp_path / "d.zarr"
    run = RunOptions(block_bytes=1, cluster="local:2", progress=False)
    with killed_before_completion():
        distance(mask, str(out), clip=3.0, run=run)
    assert (out / ".volumetric" / "done" / "distance").is_dir()
    first = _files(out)
    report = distance(mask, str(out), clip=3.0, run=run)
    assert report.resumed and report.blocks_written == 0  # every block was marked done
    assert open_image(out).complete and not (out / ".volumetric").exists()
    assert _files(out) == first
    assert started == [False, False]
