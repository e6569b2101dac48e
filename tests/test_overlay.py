"""``vol overlay``: block-wise result against the whole-volume formula."""

from __future__ import annotations

import numpy as np
import zarr
from test_predict import write_image

from volumetric.io.intensity import intensity_stats
from volumetric.io.ome import open_image


def make_inputs(tmp_path, shape=(20, 150, 140)):
    rng = np.random.default_rng(3)
    raw = rng.gamma(2.0, 100.0, size=shape).astype(np.uint16)
    pred = rng.uniform(-1, 8, size=(1, *shape)).astype(np.float32)
    return (raw, write_image(tmp_path / "raw.zarr", raw, chunks=(8, 32, 32)),
            pred, write_image(tmp_path / "pred.zarr", pred, axes="czyx", chunks=(1, 8, 32, 32)))


def test_grey_overlay_equals_the_formula_on_the_whole_volume(vol, tmp_path):
    raw, raw_path, pred, pred_path = make_inputs(tmp_path)
    result = vol("overlay", raw_path, pred_path, tmp_path / "o.zarr", "--clip", "5", "--power", "2")
    assert result.exit_code == 0, result.output
    stats = intensity_stats(zarr.open_array(f"{raw_path}/0"))
    base = np.clip((raw - stats["low"]) / (stats["high"] - stats["low"]), 0, 1)
    expected = np.rint((base + (np.clip(pred[0], 0, 5) / 5) ** 2) / 2 * 65535)
    got = zarr.open_array(f"{tmp_path}/o.zarr/0")[:]
    assert got.dtype == np.uint16 and got.shape == raw.shape
    assert np.abs(got.astype(np.int64) - expected.astype(np.int64)).max() <= 1
    image = open_image(tmp_path / "o.zarr")
    assert image.complete and image.meta.axes == "zyx" and image.meta.unit == "micrometer"


def test_rgb_overlay_with_the_default_clip(vol, tmp_path):
    raw, raw_path, _, pred_path = make_inputs(tmp_path, shape=(6, 40, 30))
    result = vol("overlay", raw_path, pred_path, tmp_path / "o.zarr", "--rgb")
    assert result.exit_code == 0, result.output
    clip = intensity_stats(zarr.open_array(f"{pred_path}/0"), channel_axis=0)["high"][0]
    assert f"clip {clip:g}" in result.output
    got = zarr.open_array(f"{tmp_path}/o.zarr/0")[:]
    assert got.shape == (3, *raw.shape)
    np.testing.assert_array_equal(got[1], got[2])
    assert (got[0] >= got[1]).all() and (got[0] > got[1]).mean() > 0.5


def test_mismatched_prediction_is_refused(vol, tmp_path):
    _, raw_path, _, _ = make_inputs(tmp_path, shape=(6, 40, 30))
    other = write_image(tmp_path / "other.zarr", np.zeros((1, 6, 40, 31), np.float32), axes="czyx")
    result = vol("overlay", raw_path, other, tmp_path / "o.zarr")
    assert result.exit_code == 2 and "does not match" in result.output
    assert not (tmp_path / "o.zarr").exists()
