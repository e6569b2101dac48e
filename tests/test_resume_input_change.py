"""Resume notices a Zarr input whose chunks were rewritten in place after the interruption."""

from __future__ import annotations

import json
import time

import numpy as np
import zarr

from image_files import write_image
from interruption import killed_before_completion, unmark
from volumetric.geometry import BlockGrid

CHUNKS = (8, 16, 16)


def _interrupt(out, shape) -> None:
    """Turn a conversion stopped before completion into one killed half way."""
    boxes = list(BlockGrid(shape, CHUNKS).boxes())
    unmark(out, "level-0", [box.key() for box in boxes[len(boxes) // 2:]])


def _complete(out) -> bool:
    return json.loads((out / "zarr.json").read_text())["attributes"]["volumetric"]["complete"]


def test_input_rewritten_in_place_is_not_resumed(vol, tmp_path):
    data = np.random.default_rng(5).integers(1, 60000, size=(32, 32, 32), dtype=np.uint16)
    raw = tmp_path / "raw.zarr"
    write_image(raw, data, chunks=CHUNKS)
    out = tmp_path / "out.zarr"
    args = ["convert", raw, out, "--chunks", "8,16,16", "--block-mb", "0.004"]
    with killed_before_completion():
        vol(*args)
    _interrupt(out, data.shape)
    meta_before = (raw / "0" / "zarr.json").read_bytes()
    time.sleep(0.01)  # a distinct modification time on coarse clocks
    array = zarr.open_array(str(raw / "0"), mode="r+")
    array[:] = array[:] // 2
    assert (raw / "0" / "zarr.json").read_bytes() == meta_before  # only chunks changed

    rerun = vol(*args)

    assert rerun.exit_code == 2
    assert rerun.stderr.strip().splitlines() == [
        f"vol: error: {out} was started from {raw} before it changed (its files were modified "
        "since the interrupted run); rerun with --overwrite to start again"]
    assert not _complete(out)
    assert vol(*args, "--overwrite").exit_code == 0
    np.testing.assert_array_equal(zarr.open_array(str(out / "0"))[:], data // 2)


def test_fingerprint_follows_chunk_files_only(tmp_path):
    from volumetric.io.fingerprint import tree_fingerprint

    raw = tmp_path / "raw.zarr"
    write_image(raw, np.arange(4096, dtype=np.uint16).reshape(16, 16, 16), chunks=(8, 8, 8))
    (raw / ".volumetric").mkdir()
    first = tree_fingerprint(raw)
    assert first == tree_fingerprint(raw)
    assert first["files"] == 2 + 8  # two zarr.json, eight chunks
    (raw / ".volumetric" / "layout.json").write_text("{}")  # a journal is not data
    assert tree_fingerprint(raw) == first
    chunk = raw / "0" / "c" / "1" / "1" / "1"
    time.sleep(0.02)
    chunk.write_bytes(chunk.read_bytes())  # same bytes, new modification time
    assert tree_fingerprint(raw)["sha256"] != first["sha256"]
