"""Faults survived on real dask processes on 127.0.0.1: a worker killed in the middle of a run,
the scheduler lost, the client killed, and a block whose input is damaged."""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass

import numpy as np
import pytest
import zarr
from dask_processes import (
    dask_processes,
    done_markers,
    run_vol,
    same_image,
    start_vol,
    wait_for_done,
)
from ome_images import write_image

from volumetric.engine import Journal, run_blocks
from volumetric.engine.journal import JOURNAL_DIR
from volumetric.errors import BlockError
from volumetric.geometry import BlockGrid, Box

BLOCKS = 128  # of the distance map below: 8 x 4 x 4 blocks of 8 x 32 x 32 voxels


def distance(mask, out, cluster) -> list[str]:
    return ["distance", mask, out, "--clip", "4", "--block-mb", "0.05", "--cluster", cluster]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A dask scheduler and two workers (with nannies) in processes of their own."""
    with dask_processes(tmp_path_factory.mktemp("dask")) as started:
        yield started


@pytest.fixture(scope="module")
def mask(tmp_path_factory):
    """A sparse mask in chunks of 8 x 16 x 16 voxels."""
    rng = np.random.default_rng(5)
    data = (rng.random((64, 128, 128)) > 0.97).astype(np.uint8)
    return write_image(tmp_path_factory.mktemp("mask") / "mask.zarr", data, chunks=(8, 16, 16))


@pytest.fixture(scope="module")
def reference(cluster, mask, tmp_path_factory):
    """The distance map of an undisturbed run on the same cluster."""
    out = tmp_path_factory.mktemp("reference") / "dist.zarr"
    result = run_vol(*distance(mask, out, cluster.address))
    assert result.returncode == 0, result.stderr
    assert f", {BLOCKS} blocks (" in result.stdout
    return out


def finished(out) -> None:
    """The run's output is complete: no journal, no lease left."""
    assert not (out / JOURNAL_DIR).exists()


def test_a_worker_killed_in_the_middle_of_a_run(cluster, mask, reference, tmp_path):
    from distributed import Client

    out = tmp_path / "dist.zarr"
    with Client(cluster.address, timeout="30s") as client:
        pids = client.run(os.getpid)
        run = start_vol(*distance(mask, out, cluster.address))
        try:
            wait_for_done(out, 10, run)
            processing = client.processing()
            victim = max(processing, key=lambda worker: len(processing[worker]))
            assert processing[victim], "the worker to kill has no block"
            os.kill(pids[victim], signal.SIGKILL)
            done_at_kill = len(done_markers(out))
            stdout, stderr = run.communicate(timeout=120)
        finally:
            run.kill()
        assert victim not in client.scheduler_info(n_workers=-1)["workers"]
    assert run.returncode == 0, stderr
    assert done_at_kill < BLOCKS
    assert f", {BLOCKS} blocks (" in stdout
    finished(out)
    same_image(out, reference)


def test_a_lost_scheduler_ends_the_run_and_a_new_one_resumes_it(mask, reference, tmp_path):
    out = tmp_path / "dist.zarr"
    with dask_processes(tmp_path / "first") as first:
        run = start_vol(*distance(mask, out, first.address))
        try:
            wait_for_done(out, 10, run)
            first.scheduler.kill()
            lost = time.monotonic()
            _, stderr = run.communicate(timeout=90)
            ended = time.monotonic() - lost
        finally:
            run.kill()
    assert run.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == (f"vol: error: lost the dask scheduler at {first.address}; "
                                       "rerun the same command to resume")
    assert ended < 60
    done = len(done_markers(out))
    assert 10 <= done < BLOCKS
    with dask_processes(tmp_path / "second") as second:
        rerun = run_vol(*distance(mask, out, second.address))
    assert rerun.returncode == 0, rerun.stderr
    assert f"{BLOCKS - done}/{BLOCKS - done} blocks" in rerun.stderr
    assert f"{done} already done" in rerun.stderr
    finished(out)
    same_image(out, reference)


def test_a_killed_client_is_resumed_by_a_rerun(cluster, mask, reference, tmp_path):
    out = tmp_path / "dist.zarr"
    run = start_vol(*distance(mask, out, cluster.address))
    try:
        wait_for_done(out, 10, run)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
    assert run.returncode == -signal.SIGKILL
    rerun = run_vol(*distance(mask, out, cluster.address))
    assert rerun.returncode == 0, rerun.stderr
    assert "already done" in rerun.stderr
    skipped = int(rerun.stderr.split(" already done")[0].rsplit(", ", 1)[1])
    assert 10 <= skipped < BLOCKS
    finished(out)
    same_image(out, reference)


def test_a_damaged_chunk_fails_the_blocks_that_read_it_and_a_repair_resumes(cluster, mask,
                                                                            reference, tmp_path):
    damaged = tmp_path / "mask.zarr"
    shutil.copytree(mask, damaged)
    chunk = damaged / "0" / "c" / "3" / "2" / "5"
    original = chunk.read_bytes()
    chunk.write_bytes(np.random.default_rng(0).bytes(len(original)))
    out = tmp_path / "dist.zarr"
    failed = run_vol(*distance(damaged, out, cluster.address))
    assert failed.returncode == 2, failed.stderr
    line = failed.stderr.splitlines()[-1]
    assert "Traceback" not in failed.stderr
    assert line.startswith("vol: error: block [") and f"damaged chunk file {chunk}" in line
    more = int(line.split(" (and ")[1].split(" more blocks failed)")[0])  # the halo reads it too
    done = len(done_markers(out))
    assert line.endswith(f"; {done} of {BLOCKS} blocks are done: once the cause is fixed, rerun "
                         "the same command to finish")
    assert done == BLOCKS - 1 - more and more >= 1
    chunk.write_bytes(original)
    rerun = run_vol(*distance(damaged, out, cluster.address))
    assert rerun.returncode == 0, rerun.stderr
    assert f"{1 + more}/{1 + more} blocks" in rerun.stderr
    assert f"{done} already done" in rerun.stderr
    finished(out)
    assert np.array_equal(zarr.open_array(str(out / "0"))[:],
                          zarr.open_array(str(reference / "0"))[:])


@dataclass(frozen=True)
class CrashOn:
    """A block task that writes ones, and kills its worker process on one block."""

    array: str
    crash_at: tuple[int, ...]

    def __call__(self, box: Box) -> None:
        if box.start == self.crash_at:
            os._exit(1)
        zarr.open_array(self.array, mode="r+")[box.slices] = 1


def test_a_block_that_kills_every_worker_running_it_is_given_up(tmp_path):
    from distributed import Client

    path = str(tmp_path / "out.zarr")
    zarr.create_array(path, shape=(16, 64), chunks=(8, 8), dtype="uint8", fill_value=0)
    grid = BlockGrid((16, 64), (8, 8))
    bad = grid.box((1, 3))
    journal = Journal(path, {"crash": list(bad.start)})
    journal.start()
    # a second death gives the block up; a worker holds only the task it runs, so the
    # deaths are the crashing block's alone
    config = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
              "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"}
    with dask_processes(tmp_path / "dask", env=config) as started, \
            Client(started.address, timeout="30s") as client, \
            pytest.raises(BlockError) as info:
        run_blocks(CrashOn(path, bad.start), list(grid.boxes()), client=client,
                   journal=journal, progress=False)
    message = str(info.value)
    assert message.startswith(f"block {bad}: 2 worker processes died while running it (the last "
                              "tcp://127.0.0.1:"), message
    assert message.endswith("): out of memory, or a crash; see the workers' logs, or try smaller "
                            "blocks (--block-mb); 15 of 16 blocks are done: once the cause is "
                            "fixed, rerun the same command to finish")
    assert journal.done("blocks") == {b.key() for b in grid.boxes()} - {bad.key()}
    expected = np.ones((16, 64), np.uint8)
    expected[bad.slices] = 0
    assert np.array_equal(zarr.open_array(path)[:], expected)
