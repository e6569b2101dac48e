"""Bad input to vol convert: one line on stderr, exit 2, source untouched, nothing complete."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def _looks_complete(dst: Path) -> bool:
    for name in ("zarr.json", ".zattrs"):
        meta = dst / name
        if meta.exists():
            attrs = json.loads(meta.read_text())
            attrs = attrs.get("attributes", attrs)
            return "ome" in attrs or "multiscales" in attrs
    return False


def _h5(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            f.create_dataset(name, data=data)
    return path


@pytest.fixture
def inputs(tmp_path):
    cube = np.arange(4 * 6 * 8, dtype=np.uint16).reshape(4, 6, 8)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("nothing")
        f.create_dataset("scalar", data=3)
    mismatched = tmp_path / "frames.h5"
    with h5py.File(mismatched, "w") as f:
        g = f.create_group("frames")
        g.create_dataset("frame_0", data=np.zeros((2, 8, 8, 3), np.uint8))
        g.create_dataset("frame_1", data=np.zeros((2, 8, 9, 3), np.uint8))
    (tmp_path / "notes.xyz").write_text("not an image")
    (tmp_path / "exists.zarr").mkdir()
    (tmp_path / "exists.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    (tmp_path / "plain").write_text("a file")
    return {
        "ok": _h5(tmp_path / "ok.h5", raw=cube),
        "ambiguous": _h5(tmp_path / "two.h5", raw=cube, labels=cube),
        "empty": empty,
        "mismatched": mismatched,
        "unknown": tmp_path / "notes.xyz",
    }


CASES = [
    ("missing file", lambda i, t: [t / "missing.h5", t / "o.zarr"], "no such file"),
    ("unknown format", lambda i, t: [i["unknown"], t / "o.zarr"], "unknown input format"),
    ("no arrays", lambda i, t: [i["empty"], t / "o.zarr"], "no array"),
    ("ambiguous arrays", lambda i, t: [i["ambiguous"], t / "o.zarr"], "--dataset"),
    ("missing dataset", lambda i, t: [i["ok"], t / "o.zarr", "--dataset", "nope"], "no dataset"),
    ("mismatched frames", lambda i, t: [i["mismatched"], t / "o.zarr"], "frame_1 has shape"),
    ("axes vs data", lambda i, t: [i["ok"], t / "o.zarr", "--axes", "cxyz"], "do not match"),
    ("axes letters", lambda i, t: [i["ok"], t / "o.zarr", "--axes", "zqx"], "distinct letters"),
    ("missing parent", lambda i, t: [i["ok"], t / "no" / "o.zarr"], "does not exist"),
    ("existing output", lambda i, t: [i["ok"], t / "exists.zarr"], "--overwrite"),
    ("file in the way", lambda i, t: [i["ok"], t / "plain", "--overwrite"], "not a Zarr store"),
    ("malformed chunks", lambda i, t: [i["ok"], t / "o.zarr", "--chunks", "4,x,8"], "--chunks"),
    ("chunk count", lambda i, t: [i["ok"], t / "o.zarr", "--chunks", "4,8"], "--chunks"),
    ("negative voxel", lambda i, t: [i["ok"], t / "o.zarr", "--voxel-size", "1,-1,1"], "positive"),
    ("voxel count", lambda i, t: [i["ok"], t / "o.zarr", "--voxel-size", "1,1"], "--voxel-size"),
    ("bad unit", lambda i, t: [i["ok"], t / "o.zarr", "--unit", "furlong"], "unknown length unit"),
    ("zstd level", lambda i, t: [i["ok"], t / "o.zarr", "--compressor", "zstd:99"], "between"),
    ("gzip level", lambda i, t: [i["ok"], t / "o.zarr", "--compressor", "gzip:12"], "between"),
    ("blosc level", lambda i, t: [i["ok"], t / "o.zarr", "--compressor", "blosc-zstd:-5"],
     "between"),
    ("level of none", lambda i, t: [i["ok"], t / "o.zarr", "--compressor", "none:3"], "no level"),
    ("uncreatable output", lambda i, t: [i["ok"], "/proc/vol-test.zarr"], "cannot write"),
    ("onto itself", lambda i, t: [i["ok"], i["ok"], "--overwrite"], "same path as the input"),
]


@pytest.mark.parametrize("name,args,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(vol, tmp_path, inputs, name, args, message):
    argv = args(inputs, tmp_path)
    before = {p: _digest(Path(p)) for p in inputs.values()}
    result = vol("convert", *argv)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vol: error: ") and message in lines[0]
    assert "Traceback" not in result.output
    assert {p: _digest(Path(p)) for p in inputs.values()} == before
    dst = Path(argv[1])
    assert not (dst.is_dir() and _looks_complete(dst))


@pytest.mark.parametrize("source,dest", [("a.zarr/0", "a.zarr"), ("a.zarr", "a.zarr/b.zarr")],
                         ids=["input inside output", "output inside input"])
def test_output_overlapping_the_input_is_refused(vol, tmp_path, source, dest):
    data = np.arange(8 * 16 * 16, dtype=np.uint16).reshape(8, 16, 16)
    np.save(tmp_path / "a.npy", data)
    assert vol("convert", tmp_path / "a.npy", tmp_path / "a.zarr").exit_code == 0
    files = {p: _digest(p) for p in (tmp_path / "a.zarr").rglob("*")}
    result = vol("convert", tmp_path / source, tmp_path / dest, "--overwrite", "--chunks", "4,8,8")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "input" in lines[0], result.stderr
    assert {p: _digest(p) for p in (tmp_path / "a.zarr").rglob("*")} == files
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "a.zarr" / "0")[:], data)
