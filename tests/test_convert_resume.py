"""A conversion killed with SIGKILL resumes where it stopped and ends identical."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import zarr

from interruption import done_keys, killed_before_completion, unmark
from volumetric.engine import RunOptions
from volumetric.errors import LayoutMismatchError
from volumetric.geometry import BlockGrid
from volumetric.io.ome import open_image
from volumetric.kernels.downsample import downsample
from volumetric.ops.convert import convert

VOL = [sys.executable, "-m", "volumetric_cli.main"]


def _vol(*args, **kwargs):
    return subprocess.run([*VOL, *map(str, args)], capture_output=True, text=True, **kwargs)


def test_kill_9_then_rerun_skips_finished_blocks(tmp_path):
    data = np.random.default_rng(3).integers(0, 60000, size=(64, 96, 96), dtype=np.uint16)
    src = tmp_path / "raw.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("raw", data=data, chunks=(8, 32, 32))
    before = src.read_bytes()
    dst = tmp_path / "raw.zarr"
    args = ["convert", src, dst, "--chunks", "4,16,16", "--levels", "2", "--block-mb", "0.002", "--workers", "1"]
    proc = subprocess.Popen([*VOL, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "log", "w"), start_new_session=True)
    done_dir = dst / ".volumetric" / "done" / "level-0"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if done_dir.is_dir() and len(done_keys(dst, "level-0")) >= 40:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the conversion finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(done_keys(dst, "level-0"))

    info = json.loads(_vol("info", dst, "--json").stdout)
    assert info["complete"] is False

    rerun = _vol(*args)
    assert rerun.returncode == 0, rerun.stderr
    skipped = [line for line in rerun.stderr.splitlines() if "already done" in line]
    assert skipped and int(skipped[0].split(", ")[-1].split()[0]) >= finished
    info = json.loads(_vol("info", dst, "--json").stdout)
    assert info["complete"] is True
    np.testing.assert_array_equal(zarr.open_array(dst / "0")[:], data)
    np.testing.assert_array_equal(zarr.open_array(dst / "1")[:], downsample(data, (2, 2, 2)))
    assert src.read_bytes() == before
    assert not (Path(dst) / ".volumetric" / "done").exists()


def test_rerun_with_another_block_size_never_leaves_holes(client, tmp_path):
    data = np.random.default_rng(4).integers(1, 60000, size=(32, 32, 32), dtype=np.uint16)
    src = tmp_path / "raw.npy"
    np.save(src, data)
    dst = tmp_path / "raw.zarr"
    small = 4 * 16 * 16 * 2  # one chunk per block
    with killed_before_completion():
        convert(str(src), str(dst), chunks=(4, 16, 16),
                run=RunOptions(block_bytes=small, client=client, progress=False))
    # Turn it into a run killed half way: only the blocks at even z indices were written.
    array = zarr.open_array(str(dst / "0"), mode="r+")
    lost = [box for box in BlockGrid(data.shape, (4, 16, 16)).boxes() if box.start[0] % 8 != 0]
    unmark(dst, "level-0", [box.key() for box in lost])
    for box in lost:
        array[box.slices] = 0
    try:
        convert(str(src), str(dst), chunks=(4, 16, 16),
                run=RunOptions(block_bytes=4 * small, client=client, progress=False))
    except LayoutMismatchError:
        assert not open_image(dst).complete
    else:
        np.testing.assert_array_equal(zarr.open_array(str(dst / "0"))[:], data)
