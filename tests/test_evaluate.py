"""vol evaluate: block-wise scores equal whole-array numpy/skimage references."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio

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
