"""vol evaluate: block-wise scores equal whole-array numpy/skimage references."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from ome_images import write_image
from volumetric.engine import RunOptions
from volumetric.ops.evaluate import evaluate


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(4)
    truth = (rng.random((20, 34, 30)) < 0.2).astype(np.uint8)
    pred = np.clip(truth + rng.normal(0, 0.4, truth.shape), 0, 1).astype(np.float32)
    return {
        "truth": truth, "pred": pred,
        "truth_path": write_image(tmp_path / "t.zarr", truth, chunks=(8, 8, 8)),
        "pred_path": write_image(tmp_path / "p.zarr", pred[None], axes="czyx", chunks=(1, 8, 16, 8)),
    }


def _reference(mask, truth):
    tp = np.count_nonzero(mask & (truth > 0))
    fp = np.count_nonzero(mask & (truth == 0))
    fn = np.count_nonzero(~mask & (truth > 0))
    return {"dice": 2 * tp / (2 * tp + fp + fn), "iou": tp / (tp + fp + fn),
            "precision": tp / (tp + fp), "recall": tp / (tp + fn)}


def test_mask_scores_equal_the_whole_volume(client, images):
    scores = evaluate(images["pred_path"], images["truth_path"], threshold=0.5,
                      run=RunOptions(client=client, progress=False))
    for key, value in _reference(images["pred"] > 0.5, images["truth"]).items():
        assert scores[key] == pytest.approx(value)
    below = evaluate(images["pred_path"], images["truth_path"], threshold=0.5, below=True,
                     run=RunOptions(client=client, progress=False))
    assert below["dice"] == pytest.approx(_reference(images["pred"] < 0.5, images["truth"])["dice"])


def test_image_scores_match_skimage(client, images):
    scores = evaluate(images["pred_path"], images["truth_path"],
                      run=RunOptions(client=client, progress=False))
    truth = images["truth"].astype(np.float64)
    assert scores["mse"] == pytest.approx(mean_squared_error(truth, images["pred"]))
    assert scores["psnr"] == pytest.approx(
        peak_signal_noise_ratio(truth, images["pred"].astype(np.float64), data_range=1.0))


def test_cubes_restrict_the_comparison(client, images, tmp_path):
    cubes = tmp_path / "cubes.json"
    cubes.write_text(json.dumps({"cube_shape": [8, 16, 16], "cubes": [[0, 0, 0], [2, 2, 1]]}))
    scores = evaluate(images["pred_path"], images["truth_path"], threshold=0.5, cubes=str(cubes),
                      run=RunOptions(client=client, progress=False))
    inside = np.zeros(images["truth"].shape, bool)
    inside[0:8, 0:16, 0:16] = inside[16:20, 32:34, 16:30] = True
    mask, truth = images["pred"] > 0.5, images["truth"]
    assert scores["voxels"] == inside.sum()
    assert scores["dice"] == pytest.approx(_reference(mask[inside], truth[inside])["dice"])


def test_mismatched_shapes_are_one_line(vol, images, tmp_path):
    other = write_image(tmp_path / "o.zarr", np.zeros((20, 34, 31), np.uint8))
    result = vol("evaluate", images["pred_path"], other, "--threshold", "0.5")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("vol: error: PRED has spatial shape (20, 34, 30) but TRUTH "
                                     "has (20, 34, 31)")


def _smooth_pair(shape, seed):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    truth = ndimage.gaussian_filter(rng.random(shape), 2) * 1000
    pred = truth + ndimage.gaussian_filter(rng.normal(0, 40, shape), 1)
    return truth.astype(np.float32), pred.astype(np.float32)


def test_ssim_equals_skimage_on_the_whole_volume(client, tmp_path):
    truth, pred = _smooth_pair((21, 30, 26), 7)
    t = write_image(tmp_path / "t.zarr", truth, chunks=(8, 8, 8))
    p = write_image(tmp_path / "p.zarr", pred, chunks=(8, 8, 8))
    run = RunOptions(client=client, progress=False, block_bytes=8**3 * 8)
    scores = evaluate(p, t, run=run)
    span = float(truth.max() - truth.min())
    assert scores["data_range"] == pytest.approx(span)
    assert scores["data_range_from"] == "truth max - min"
    x, y = pred.astype(np.float64), truth.astype(np.float64)
    assert abs(scores["ssim"] - structural_similarity(x, y, data_range=span)) < 1e-6
    assert scores["psnr"] == pytest.approx(peak_signal_noise_ratio(y, x, data_range=span))
    given = evaluate(p, t, data_range=4000.0, win_size=5, run=run)
    assert given["data_range_from"] == "given"
    assert abs(given["ssim"] - structural_similarity(x, y, data_range=4000.0, win_size=5)) < 1e-6


def test_ssim_of_a_single_plane_is_2d(vol, tmp_path):
    truth, pred = _smooth_pair((1, 40, 33), 8)
    t = write_image(tmp_path / "t.zarr", truth, chunks=(1, 16, 16))
    p = write_image(tmp_path / "p.zarr", pred, chunks=(1, 16, 16))
    result = vol("evaluate", p, t, "--data-range", "1000", "--json", "--block-mb", "0.001")
    scores = json.loads(result.stdout)
    expected = structural_similarity(pred[0].astype(np.float64), truth[0].astype(np.float64),
                                     data_range=1000.0)
    assert abs(scores["ssim"] - expected) < 1e-6
    assert "ssim" in vol("evaluate", p, t).stdout
