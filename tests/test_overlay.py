"""``vol overlay``: block-wise result against the whole-volume formula, on a rendered SWC too."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from image_files import write_image as write_physical
from test_predict import write_image

from volumetric.io.intensity import intensity_stats
from volumetric.io.ome import open_image
from volumetric.io.swc import write_swc
from volumetric.testing.neurites import neurites


def make_inputs(tmp_path, shape=(20, 150, 140)):
    rng = np.random.default_rng(3)
    raw = rng.gamma(2.0, 100.0, size=shape).astype(np.uint16)
    pred = rng.uniform(-1, 8, size=(1, *shape)).astype(np.float32)
    return (raw, write_image(tmp_path / "raw.zarr", raw, chunks=(8, 32, 32)),
            pred, write_image(tmp_path / "pred.zarr", pred, axes="czyx", chunks=(1, 8, 32, 32)))


def normalised(raw, raw_path):
    stats = intensity_stats(zarr.open_array(f"{raw_path}/0"))
    return np.clip((raw - stats["low"]) / (stats["high"] - stats["low"]), 0, 1)


def scaled(total):
    """The whole-volume reference: the sum with its maximum mapped to 65535."""
    return np.rint(total / total.max() * 65535).astype(np.int64)


def test_grey_overlay_equals_the_formula_on_the_whole_volume(vol, tmp_path):
    raw, raw_path, pred, pred_path = make_inputs(tmp_path)
    result = vol("overlay", raw_path, pred_path, tmp_path / "o.zarr", "--clip", "5",
                 "--power", "2", "--weight", "0.5", "--block-mb", "0.25")
    assert result.exit_code == 0, result.output
    weights = (1 - np.clip(pred[0], 0, 5) / 5) ** 2
    expected = scaled(normalised(raw, raw_path) + 0.5 * weights)
    got = zarr.open_array(f"{tmp_path}/o.zarr/0")[:]
    assert got.dtype == np.uint16 and got.shape == raw.shape and got.max() == 65535
    assert np.abs(got.astype(np.int64) - expected).max() <= 1
    image = open_image(tmp_path / "o.zarr")
    assert image.complete and image.meta.axes == "zyx" and image.meta.unit == "micrometer"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A synthetic neurite volume, its SWC and the raw image (voxel size 2 x 1 x 1 um)."""
    root = tmp_path_factory.mktemp("swc")
    volume = neurites((24, 64, 64), voxel_size=(2.0, 1.0, 1.0), seed=5)
    raw = write_physical(root / "raw.zarr", volume.raw(), voxel_size=volume.voxel_size,
                         chunks=(8, 32, 32))
    write_swc(root / "n.swc", volume.skeleton())
    return root, raw


def test_rendered_swc_overlay_is_brightest_on_the_neurites(vol, rendered, tmp_path):
    root, raw = rendered
    assert vol("render", root / "n.swc", "--like", raw, tmp_path / "m.zarr").exit_code == 0
    result = vol("distance", tmp_path / "m.zarr", tmp_path / "d.zarr", "--clip", "6")
    assert result.exit_code == 0, result.output
    # a c-less distance map, its kind read from the metadata vol distance wrote
    assert open_image(tmp_path / "d.zarr").attrs["volumetric"]["kind"] == "distance"
    result = vol("overlay", raw, tmp_path / "d.zarr", tmp_path / "o.zarr", "--clip", "6",
                 "--power", "2")
    assert result.exit_code == 0, result.output
    assert "(distance, clip 6, power 2)" in result.output
    mask = zarr.open_array(f"{tmp_path}/m.zarr/0")[:] > 0
    dist = zarr.open_array(f"{tmp_path}/d.zarr/0")[:]
    got = zarr.open_array(f"{tmp_path}/o.zarr/0")[:].astype(np.float64)
    assert mask.sum() > 100 and (dist >= 6).sum() > 100
    assert got[mask].mean() > 1.5 * got[dist >= 6].mean()
    assert got.max() == 65535
    raw_data = zarr.open_array(f"{raw}/0")[:]
    expected = scaled(normalised(raw_data, raw) + (1 - np.minimum(dist, 6) / 6) ** 2)
    assert np.abs(got - expected).max() <= 1


def test_probability_overlay(vol, tmp_path):
    raw, raw_path, _, _ = make_inputs(tmp_path, shape=(6, 40, 30))
    prob = np.random.default_rng(1).uniform(-0.2, 1.2, size=raw.shape).astype(np.float32)
    prob_path = write_image(tmp_path / "prob.zarr", prob, chunks=(4, 16, 16))
    result = vol("overlay", raw_path, prob_path, tmp_path / "o.zarr", "--kind", "probability",
                 "--weight", "2")
    assert result.exit_code == 0, result.output
    expected = scaled(normalised(raw, raw_path) + 2 * np.clip(prob, 0, 1))
    got = zarr.open_array(f"{tmp_path}/o.zarr/0")[:]
    assert np.abs(got.astype(np.int64) - expected).max() <= 1
    result = vol("overlay", raw_path, prob_path, tmp_path / "p.zarr", "--kind", "probability",
                 "--clip", "3")
    assert result.exit_code == 2 and "a probability is used as it is" in result.stderr


def test_rgb_puts_the_weight_on_its_own_channel(vol, tmp_path):
    raw, raw_path, pred, pred_path = make_inputs(tmp_path, shape=(6, 40, 30))
    result = vol("overlay", raw_path, pred_path, tmp_path / "o.zarr", "--rgb")
    assert result.exit_code == 0, result.output
    clip = intensity_stats(zarr.open_array(f"{pred_path}/0"), channel_axis=0)["high"][0]
    assert f"clip {clip:g}" in result.output
    base = normalised(raw, raw_path)
    total = base + (1 - np.clip(pred[0], 0, clip) / clip)
    got = zarr.open_array(f"{tmp_path}/o.zarr/0")[:].astype(np.int64)
    assert got.shape == (3, *raw.shape) and got[1].max() == 65535
    assert np.abs(got[1] - scaled(total)).max() <= 1
    assert np.abs(got[0] - np.rint(base / total.max() * 65535)).max() <= 1
    np.testing.assert_array_equal(got[0], got[2])
    result = vol("overlay", raw_path, pred_path, tmp_path / "r.zarr", "--rgb", "--color", "red")
    red = zarr.open_array(f"{tmp_path}/r.zarr/0")[:].astype(np.int64)
    np.testing.assert_array_equal(red, got[[1, 0, 2]])
    assert open_image(tmp_path / "r.zarr").meta.axes == "czyx"


def test_mismatches_name_what_differs(vol, tmp_path):
    _, raw_path, _, _ = make_inputs(tmp_path, shape=(6, 40, 30))
    other = write_image(tmp_path / "other.zarr", np.zeros((1, 6, 40, 31), np.float32), axes="czyx")
    result = vol("overlay", raw_path, other, tmp_path / "o.zarr")
    assert result.exit_code == 2
    assert "does not match RAW" in result.stderr and "zyx shape (6, 40, 31) vs (6, 40, 30)" \
        in result.stderr
    assert not (tmp_path / "o.zarr").exists()
    coarse = write_physical(tmp_path / "coarse.zarr", np.zeros((6, 40, 30), np.float32),
                            voxel_size=(1.0, 1.0, 1.0))
    result = vol("overlay", raw_path, coarse, tmp_path / "o.zarr")
    assert result.exit_code == 2 and "shape" not in result.stderr
    assert "voxel size (1.0, 1.0, 1.0) vs (2.0, 0.5, 0.5)" in result.stderr


def test_help_points_to_export_for_vaa3d(vol):
    result = vol("overlay", "--help")
    text = " ".join(result.output.split())
    assert "OME-Zarr image" in text and "vol export OUT.zarr OUT.v3draw" in text
