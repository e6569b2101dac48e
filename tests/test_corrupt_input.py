"""Damaged inputs and a full disk end in one line naming the file, exit status 2."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from dask_processes import done_markers
import torch
from test_predict import write_image

from predict_models import save_torchscript, tiny

SHAPE = (16, 16, 16)


def one_error(result) -> str:
    """Exit status 2, no traceback and exactly one error line, which is returned."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("vol: error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def not_complete(out) -> bool:
    meta = out / "zarr.json"
    return not meta.exists() or not json.loads(meta.read_text())["attributes"]["volumetric"][
        "complete"]


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[3:13, 3:13, 3:13] = 1
    return mask


def _damage(path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return str(save_torchscript(tiny(), tmp_path_factory.mktemp("model") / "tiny.pt"))


@pytest.mark.parametrize("command", ["convert", "distance", "project", "predict", "evaluate",
                                     "discover", "overlay-raw", "overlay-pred",
                                     "overlay-pred-clip"])
def test_damaged_zarr_chunk_names_the_chunk_file(vol, tmp_path, model_file, command):
    raw = tmp_path / "raw.zarr"
    write_image(raw, _mask(), chunks=(8, 8, 8))
    pred = tmp_path / "pred.zarr"
    write_image(pred, _mask()[None].astype(np.float32), axes="czyx", chunks=(1, 8, 8, 8))
    damaged = (pred / "0" / "c" / "0" / "1" / "1" / "1" if command.startswith("overlay-pred")
               else raw / "0" / "c" / "1" / "1" / "1")
    _damage(damaged)
    out = tmp_path / "out.zarr"
    args = {
        "convert": ["convert", raw, out],
        "distance": ["distance", raw, out, "--clip", "2"],
        "project": ["project", raw, out],
        "predict": ["predict", raw, out, "--model", model_file, "--device", "cpu",
                    "--window", "8,8,8"],
        "evaluate": ["evaluate", raw, raw, "--threshold", "0.5"],
        "discover": ["discover", raw, tmp_path / "cubes.json", "--all"],
        "overlay-raw": ["overlay", raw, pred, out, "--clip", "1"],
        "overlay-pred": ["overlay", raw, pred, out],
        "overlay-pred-clip": ["overlay", raw, pred, out, "--clip", "1"],
    }[command]
    before = damaged.read_bytes()
    line = one_error(vol(*args))
    assert f"damaged chunk file {damaged}" in line, line
    assert "blosc" in line
    assert not_complete(out) and not (tmp_path / "cubes.json").exists()
    assert damaged.read_bytes() == before


@pytest.mark.parametrize("meta", ["group", "array"])
def test_malformed_zarr_json_names_the_file(vol, tmp_path, meta):
    raw = tmp_path / "raw.zarr"
    write_image(raw, _mask(), chunks=(8, 8, 8))
    broken = raw / "zarr.json" if meta == "group" else raw / "0" / "zarr.json"
    broken.write_text('{"zarr_format": 3, "node_type": ')
    out = tmp_path / "out.zarr"
    line = one_error(vol("convert", raw, out))
    assert f"{broken}: not valid JSON" in line, line
    assert not out.exists()
    line = one_error(vol("distance", raw, out, "--clip", "2"))
    assert f"{broken}: not valid JSON" in line, line


def test_full_disk_while_writing_a_block(vol, client, tmp_path):
    raw = tmp_path / "raw.zarr"
    write_image(raw, _mask(), chunks=(8, 8, 8))
    out = tmp_path / "out.zarr"
    target = str(out / "0")

    def fill_disk() -> None:  # in each worker: chunk writes under OUT/0 find the disk full
        import errno

        import zarr.storage._local as local

        original = local._put

        def put(path, value, exclusive=False):
            if str(path).startswith(target):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return original(path, value, exclusive)

        local._put, local._unpatched_put = put, original

    def free_disk() -> None:
        import zarr.storage._local as local

        local._put = local.__dict__.pop("_unpatched_put", local._put)

    client.run(fill_disk)
    try:
        result = vol("convert", raw, out, "--chunks", "8,8,8")
    finally:
        client.run(free_disk)
    line = one_error(result)
    assert f"no space left on device writing {target}" in line, line
    assert not_complete(out)
    assert not done_markers(out)  # no block claims to be done


@pytest.mark.parametrize("content", [
    '{"shape": [16, 16, 16], "cube_shape": [8, 8, 8], "cubes": [[1e400, 0, 0]]}',
    '{"shape": [16, 16, 16], "cube_shape": [1e400, 8, 8], "cubes": []}',
    '{"shape": [16, 16, 16], "cube_shape": [8, 8, 8], "cubes": '
    + "[" * 100_000 + "]" * 100_000 + "}",
])
def test_malformed_cube_list_is_one_line(vol, tmp_path, content):
    raw = tmp_path / "raw.zarr"
    write_image(raw, _mask(), chunks=(8, 8, 8))
    cubes = tmp_path / "cubes.json"
    cubes.write_text(content)
    line = one_error(vol("evaluate", raw, raw, "--threshold", "0.5", "--cubes", cubes))
    assert str(cubes) in line, line


@pytest.mark.parametrize("normalize", ["percentile", "none"])
def test_damaged_chunk_while_training_names_the_chunk_file(vol, tmp_path, normalize):
    """The intensity survey (percentile) or the first patch (none) meets the damage."""
    raw, target = tmp_path / "raw.zarr", tmp_path / "target.zarr"
    write_image(raw, _mask().astype(np.float32) * 100, chunks=(8, 8, 8))
    write_image(target, _mask(), chunks=(8, 8, 8))
    for chunk in sorted((raw / "0" / "c").rglob("*")):
        if chunk.is_file():
            _damage(chunk)
    line = one_error(vol("train", raw, target, "--out", tmp_path / "run", "--patch", "8,8,8",
                         "--steps", "1", "--batch", "1", "--val-fraction", "0",
                         "--normalize", normalize))
    assert f"damaged chunk file {raw / '0' / 'c'}" in line, line
    assert not (tmp_path / "run" / "model.pt").exists()


def test_a_loader_workers_input_error_keeps_its_one_line():
    from volumetric.errors import InputError
    from volumetric.train.loop import _batches

    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            raise InputError("raw.zarr: cannot read [0:8]: damaged chunk file raw.zarr/0/c/0")

    loader = torch.utils.data.DataLoader(Broken(), num_workers=1)
    with pytest.raises(InputError) as info:
        list(_batches(loader))
    assert str(info.value) == "raw.zarr: cannot read [0:8]: damaged chunk file raw.zarr/0/c/0"


CONVERT = ("--chunks", "8,8,8", "--block-mb", "0.0005")  # a block per chunk: 64 blocks


@pytest.fixture
def damaged_raw(vol, tmp_path):
    """A raw image of 64 chunks, what convert makes of it, and one of its chunks damaged
    (with its bytes before)."""
    raw = tmp_path / "raw.zarr"
    write_image(raw, np.random.default_rng(1).integers(0, 255, (32, 32, 32), dtype=np.uint8),
                chunks=(8, 8, 8))
    reference = vol("convert", raw, tmp_path / "reference.zarr", *CONVERT)
    assert reference.exit_code == 0 and ", 64 blocks," in reference.output, reference.output
    chunk = raw / "0" / "c" / "1" / "2" / "3"
    original = chunk.read_bytes()
    _damage(chunk)
    return raw, chunk, original


def test_a_damaged_chunk_fails_its_block_alone(vol, tmp_path, damaged_raw):
    import zarr

    raw, chunk, original = damaged_raw
    out = tmp_path / "out.zarr"
    line = one_error(vol("convert", raw, out, *CONVERT))
    assert line.startswith("vol: error: block [8:16, 16:24, 24:32]: "), line
    assert f"damaged chunk file {chunk}" in line
    assert line.endswith("; 63 of 64 blocks are done: once the cause is fixed, rerun the same "
                         "command to finish")
    assert len(done_markers(out)) == 63
    chunk.write_bytes(original)  # repaired: the same bytes, a new modification time
    rerun = vol("convert", raw, out, *CONVERT)
    assert rerun.exit_code == 0, rerun.output
    assert "1/1 blocks" in rerun.output and "63 already done" in rerun.output
    assert not (out / ".volumetric").exists()
    assert np.array_equal(zarr.open_array(str(out / "0"))[:],
                          zarr.open_array(str(tmp_path / "reference.zarr" / "0"))[:])


def test_a_rerun_is_refused_when_more_than_the_damaged_chunk_changed(vol, tmp_path, damaged_raw):
    raw, chunk, original = damaged_raw
    out = tmp_path / "out.zarr"
    one_error(vol("convert", raw, out, *CONVERT))
    chunk.write_bytes(original)
    other = raw / "0" / "c" / "0" / "0" / "0"
    other.write_bytes(other.read_bytes())  # rewritten since the run: a block done may differ
    line = one_error(vol("convert", raw, out, *CONVERT))
    assert line == (f"vol: error: {out} was started from {raw} before it changed (its files were "
                    "modified since the interrupted run); rerun with --overwrite to start again")
    assert len(done_markers(out)) == 63
