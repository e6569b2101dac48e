"""`vol align`: known synthetic motion is undone on every channel and plane; tables; resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import zarr
from interruption import killed_before_completion

import volumetric
from volumetric.errors import InputError, LayoutMismatchError
from volumetric.kernels.registration import warp
from volumetric.testing.frames import VOXEL_SIZE_XYZ, frames, write_frames

SHAPE = (2, 64, 56, 5)  # C, X, Y, Z


@pytest.fixture(scope="module")
def worm(tmp_path_factory, client):
    """A 4-frame rigid recording, as HDF5 and converted to a tczyx OME-Zarr."""
    d = tmp_path_factory.mktemp("align")
    movie = frames(SHAPE, 4, nuclei=70, seed=3)
    h5 = write_frames(d / "worm.h5", movie, progress=False)
    volumetric.convert(str(h5), str(d / "worm.zarr"), axes="cxyz",
                       run=volumetric.RunOptions(client=client, progress=False))
    return d, movie


def _errors(movie, records, reference: int) -> np.ndarray:
    """Mean landmark error (pixels, y/x) of each frame's matrix."""
    at_ref = movie.positions(reference)[:, [1, 0]]
    out = []
    for r in records:
        m = np.array(r["matrix"])
        truth = movie.positions(r["t"])[:, [1, 0]]
        out.append(np.linalg.norm(at_ref @ m[:2, :2].T + m[:2, 2] - truth, axis=1).mean())
    return np.array(out)


def test_rigid_alignment_writes_image_and_tables(vol, client, worm, tmp_path):
    d, movie = worm
    out = tmp_path / "aligned.zarr"
    result = vol("align", d / "worm.zarr", out, "--channel", "0", "--movie", tmp_path / "m.mp4")
    assert result.exit_code == 0, result.output
    assert "4 frames aligned to frame 2 (rigid)" in result.output
    records = json.loads((out / "transforms.json").read_text())
    assert [r["t"] for r in records] == [0, 1, 2, 3]
    assert np.array(records[2]["matrix"]) == pytest.approx(np.eye(3))
    assert _errors(movie, records, 2).max() < 0.5
    rows = list(csv.DictReader(open(out / "transforms.csv")))
    assert len(rows) == 4 and {"t", "rotation_deg", "offset_row", "score"} <= set(rows[0])
    assert all(float(r["score"]) >= float(r["score_before"]) - 1e-9 for r in rows)
    source = zarr.open_array(str(d / "worm.zarr" / "0"), mode="r")[:]
    aligned = zarr.open_array(str(out / "0"), mode="r")
    assert aligned.shape == source.shape and aligned.dtype == source.dtype
    m = np.array(records[0]["matrix"])
    for c in range(SHAPE[0]):  # every channel and plane gets the frame's transform
        for z in (0, SHAPE[3] - 1):
            assert np.array_equal(aligned[0, c, z], warp(source[0, c, z], m))
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]
    assert attrs["volumetric"]["complete"] and not (out / ".volumetric").exists()
    assert (tmp_path / "m.mp4").stat().st_size > 0
    by_python = tmp_path / "py.zarr"  # the Python API, with its defaults, equals the CLI
    volumetric.align(str(d / "worm.zarr"), str(by_python),
                     run=volumetric.RunOptions(client=client, progress=False))
    assert np.array_equal(zarr.open_array(str(by_python / "0"), mode="r")[:], aligned[:])
    assert json.loads((by_python / "transforms.json").read_text()) == records


def test_previous_reference_composes_along_the_recording(client, worm, tmp_path):
    d, movie = worm
    run = volumetric.RunOptions(client=client, progress=False)
    report = volumetric.align(str(d / "worm.zarr"), str(tmp_path / "p.zarr"),
                              reference="previous", transform="rigid", run=run)
    assert report.reference == "previous"
    assert _errors(movie, report.records, 0).max() < 0.5
    assert all(r["fixed"] == max(r["t"] - 1, 0) for r in report.records)


def test_translation_and_resume_after_interruption(client, tmp_path):
    movie = frames((1, 48, 48, 4), 3, nuclei=50, seed=6, rotation=0.0)
    h5 = write_frames(tmp_path / "w.h5", movie, progress=False)
    out = tmp_path / "t.zarr"
    run = volumetric.RunOptions(client=client, progress=False)
    with killed_before_completion():
        volumetric.align(str(h5), str(out), reference=0, transform="translation", run=run)
    assert (out / ".volumetric").exists()
    report = volumetric.align(str(h5), str(out), reference=0, transform="translation", run=run)
    assert report.resumed and _errors(movie, report.records, 0).max() < 0.5
    assert json.loads((out / "transforms.json").read_text())[1]["t"] == 1


@pytest.mark.parametrize("args, message", [
    (["--reference", "9"], "--reference 9 is out of range"),
    (["--reference", "first"], "a frame number or 'previous'"),
    (["--channel", "5"], "--channel 5 does not exist"),
    (["--method", "learned"], "--method learned needs --matcher"),
])
def test_bad_options_are_one_line_and_write_nothing(vol, worm, tmp_path, args, message):
    d, _ = worm
    result = vol("align", d / "worm.zarr", tmp_path / "o.zarr", *args)
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o.zarr").exists()


def test_inputs_without_frames_are_refused(vol, tmp_path):
    from image_files import write_image

    write_image(tmp_path / "one.zarr", np.zeros((1, 4, 16, 16), np.uint16), axes="tzyx")
    write_image(tmp_path / "stack.zarr", np.zeros((4, 16, 16), np.uint16))
    for name, message in (("one", "a single frame"), ("stack", "needs a time series")):
        result = vol("align", tmp_path / f"{name}.zarr", tmp_path / "o.zarr")
        assert result.exit_code == 2 and message in result.output
        assert not (tmp_path / "o.zarr").exists()


def _errors_3d(movie, records, reference: int) -> np.ndarray:
    """Mean landmark error (voxels, z/y/x) of each frame's 4x4 matrix."""
    at_ref = movie.positions(reference)[:, ::-1]
    return np.array([np.linalg.norm(at_ref @ np.array(r["matrix"])[:3, :3].T
                                    + np.array(r["matrix"])[:3, 3]
                                    - movie.positions(r["t"])[:, ::-1], axis=1).mean()
                     for r in records])


def test_3d_previous_reference_warps_every_channel_in_3d(vol, worm, tmp_path):
    d, movie = worm
    out = tmp_path / "a3.zarr"
    result = vol("align", d / "worm.zarr", out, "--dims", "3", "--reference", "previous")
    assert result.exit_code == 0, result.output
    assert "4 frames aligned each to the previous one, composed from frame 0 (rigid, 3D)" \
        in result.output
    records = json.loads((out / "transforms.json").read_text())
    assert [np.array(r["matrix"]).shape for r in records] == [(4, 4)] * 4
    assert np.array(records[0]["matrix"]) == pytest.approx(np.eye(4))
    assert [np.array(r["pair_matrix"]).shape for r in records] == [(4, 4)] * 4
    assert _errors_3d(movie, records, 0).max() < 0.5
    um = np.array(VOXEL_SIZE_XYZ[::-1])  # the input's voxel size, (z, y, x): rigid in µm
    for r in records:
        turn = np.array(r["matrix"])[:3, :3] * (um[:, None] / um[None, :])
        assert turn @ turn.T == pytest.approx(np.eye(3), abs=1e-9)
    assert np.array(records[2]["matrix"]) == pytest.approx(
        np.array(records[2]["pair_matrix"]) @ np.array(records[1]["matrix"]))
    rows = list(csv.DictReader(open(out / "transforms.csv")))
    assert {"offset_z", "offset_x", "rotation_z_deg", "rotation_y_deg", "a_zx"} <= set(rows[0])
    assert "offset_row" not in rows[0]
    assert all(float(r["score"]) >= float(r["score_before"]) - 1e-9 for r in rows)
    source = zarr.open_array(str(d / "worm.zarr" / "0"), mode="r")[:]
    aligned = zarr.open_array(str(out / "0"), mode="r")[:]
    m = np.array(records[3]["matrix"])
    for c in range(SHAPE[0]):  # every channel, warped as a volume
        assert np.array_equal(aligned[3, c], warp(source[3, c], m))


def test_a_resume_with_other_dims_is_refused(client, worm, tmp_path):
    d, _ = worm
    out = tmp_path / "r.zarr"
    run = volumetric.RunOptions(client=client, progress=False)
    with killed_before_completion():
        volumetric.align(str(d / "worm.zarr"), str(out), reference=0,
                         transform="translation", dims=3, run=run)
    with pytest.raises(LayoutMismatchError, match="started with other parameters"):
        volumetric.align(str(d / "worm.zarr"), str(out), reference=0,
                         transform="translation", run=run)
    report = volumetric.align(str(d / "worm.zarr"), str(out), reference=0,
                              transform="translation", dims=3, run=run)
    assert report.resumed and report.dims == 3
    assert np.array(report.records[1]["matrix"]).shape == (4, 4)


def test_3d_needs_a_z_axis(vol, tmp_path):
    from image_files import write_image

    write_image(tmp_path / "flat.zarr", np.zeros((3, 2, 16, 16), np.uint16), axes="tcyx")
    result = vol("align", tmp_path / "flat.zarr", tmp_path / "o.zarr", "--dims", "3")
    assert result.exit_code == 2
    assert "--dims 3 registers volumes and needs a z axis" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o.zarr").exists()
    with pytest.raises(InputError, match="--dims must be 2 or 3"):
        volumetric.align(str(tmp_path / "flat.zarr"), str(tmp_path / "o.zarr"), dims=4)
    assert not (tmp_path / "o.zarr").exists()
