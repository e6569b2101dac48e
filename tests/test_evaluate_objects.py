"""vol evaluate's objects: block-wise components and matching equal whole-array scipy + matching."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import ndimage

from ome_images import write_image
from volumetric.engine import RunOptions
from volumetric.ops.evaluate import evaluate

SHAPE = (24, 40, 36)
STRUCTURE = {6: 1, 18: 2, 26: 3}


def _blobs(shape, seed, sigma=1.6, level=0.53):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), sigma) > level


def _reference(truth_labels, pred_labels, iou=0.5, min_size=0):
    """Whole-array matching: IoU of every overlapping pair, greedy one-to-one by IoU."""
    t_size = np.bincount(truth_labels.ravel())
    p_size = np.bincount(pred_labels.ravel())
    keep_t = np.flatnonzero(t_size >= max(min_size, 1))
    keep_p = np.flatnonzero(p_size >= max(min_size, 1))
    keep_t, keep_p = keep_t[keep_t > 0], keep_p[keep_p > 0]
    both = np.isin(truth_labels, keep_t) & np.isin(pred_labels, keep_p)
    pairs, shared = np.unique(np.stack([truth_labels[both], pred_labels[both]]), axis=1,
                              return_counts=True)
    ious = shared / (t_size[pairs[0]] + p_size[pairs[1]] - shared)
    used_t, used_p, matched = set(), set(), []
    for k in np.argsort(-ious, kind="stable"):
        t, p = pairs[0][k], pairs[1][k]
        if ious[k] >= iou and t not in used_t and p not in used_p:
            used_t.add(t), used_p.add(p), matched.append(ious[k])
    splits = sum(np.count_nonzero((pairs[0] == t) & (shared >= 0.5 * p_size[pairs[1]])) > 1
                 for t in keep_t)
    merges = sum(np.count_nonzero((pairs[1] == p) & (shared >= 0.5 * t_size[pairs[0]])) > 1
                 for p in keep_p)
    best = {t: max(ious[pairs[0] == t], default=0.0) for t in keep_t}
    return {"truth": len(keep_t), "predicted": len(keep_p), "matched": len(matched),
            "splits": splits, "merges": merges,
            "mean_matched_iou": float(np.mean(matched)) if matched else None,
            "sizes": t_size, "best": best, "matched_ids": used_t}


def _label(mask, connectivity):
    return ndimage.label(mask, ndimage.generate_binary_structure(
        mask.ndim, min(STRUCTURE[connectivity], mask.ndim)))[0]


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    d = tmp_path_factory.mktemp("objects")
    truth = _blobs(SHAPE, 1)
    noise = np.random.default_rng(2).normal(0, 0.25, SHAPE)
    pred = np.clip(ndimage.gaussian_filter(truth.astype(float), 1.0) + noise * (truth == 0) * 0.2
                   + ndimage.shift(truth.astype(float), (0, 1, 0), order=0) * 0.3 - 0.1, 0, 1)
    return {"truth": truth, "pred": pred.astype(np.float32),
            "truth_path": write_image(d / "t.zarr", truth.astype(np.uint8), chunks=(8, 8, 8)),
            "pred_path": write_image(d / "p.zarr", pred.astype(np.float32)[None], axes="czyx",
                                     chunks=(1, 8, 8, 8))}


def _run(client, blocks=8):
    return RunOptions(client=client, progress=False, block_bytes=blocks**3 * 8)


def _check(objects, ref):
    for key in ("truth", "predicted", "matched", "splits", "merges"):
        assert objects[key] == ref[key], key
    assert objects["mean_matched_iou"] == pytest.approx(ref["mean_matched_iou"])
    assert objects["recall"] == pytest.approx(ref["matched"] / ref["truth"])
    assert objects["precision"] == pytest.approx(ref["matched"] / ref["predicted"])


@pytest.mark.parametrize("connectivity", [6, 26])
def test_objects_crossing_blocks_equal_whole_array_labels(client, volumes, connectivity):
    scores = evaluate(volumes["pred_path"], volumes["truth_path"], threshold=0.5,
                      connectivity=connectivity, run=_run(client))
    truth_labels = _label(volumes["truth"], connectivity)
    pred_labels = _label(volumes["pred"] > 0.5, connectivity)
    ref = _reference(truth_labels, pred_labels)
    assert ref["truth"] > 20 and 0 < ref["matched"] < ref["truth"]
    assert ref["splits"] + ref["merges"] > 0
    sizes = ref["sizes"][1:]
    assert sizes.max() > 8**3 // 4  # objects larger than a block's share, crossing borders
    _check(scores["objects"], ref)


def test_min_size_and_iou_change_the_matching(client, volumes):
    scores = evaluate(volumes["pred_path"], volumes["truth_path"], threshold=0.5, iou=0.3,
                      min_size=20, connectivity=18, run=_run(client, 16))
    ref = _reference(_label(volumes["truth"], 18), _label(volumes["pred"] > 0.5, 18), iou=0.3,
                     min_size=20)
    _check(scores["objects"], ref)


def test_instance_labels_are_objects_as_they_are(client, tmp_path):
    """A truth with more than two values: each id is one object, even in two pieces."""
    truth = _label(_blobs(SHAPE, 5), 6).astype(np.uint16) * 3
    truth[truth == 3 * 2] = 0
    truth[0:3, 0:3, 0:3] = 3 * 4  # a second piece of object 12
    pred = (truth > 0).astype(np.float32)
    t = write_image(tmp_path / "t.zarr", truth, chunks=(8, 8, 8))
    p = write_image(tmp_path / "p.zarr", pred, chunks=(8, 8, 8))
    scores = evaluate(p, t, threshold=0.5, run=_run(client))
    ref = _reference(truth, _label(pred > 0.5, 6))
    assert scores["objects"]["truth_kind"] == "labels"
    assert scores["objects"]["truth"] == len(np.unique(truth)) - 1
    _check(scores["objects"], ref)


def test_single_plane_is_2d(client, tmp_path):
    truth = _blobs((1, 64, 60), 3, sigma=1.2)
    pred = _blobs((1, 64, 60), 3, sigma=1.2, level=0.54).astype(np.float32)
    t = write_image(tmp_path / "t.zarr", truth.astype(np.uint8), chunks=(1, 16, 16))
    p = write_image(tmp_path / "p.zarr", pred, chunks=(1, 16, 16))
    for connectivity, plane in ((6, 1), (26, 2)):
        scores = evaluate(p, t, threshold=0.5, connectivity=connectivity, run=_run(client))
        structure = ndimage.generate_binary_structure(2, plane)
        ref = _reference(ndimage.label(truth[0], structure)[0][None],
                         ndimage.label(pred[0] > 0.5, structure)[0][None])
        _check(scores["objects"], ref)


def test_cubes_count_objects_inside_them(client, volumes, tmp_path):
    cubes = tmp_path / "cubes.json"
    cubes.write_text(json.dumps({"cube_shape": [8, 16, 16], "cubes": [[0, 0, 0], [0, 0, 1],
                                                                        [1, 1, 1], [2, 2, 2]]}))
    scores = evaluate(volumes["pred_path"], volumes["truth_path"], threshold=0.5,
                      cubes=str(cubes), run=_run(client))
    inside = np.zeros(SHAPE, bool)
    inside[0:8, 0:16, 0:32] = inside[8:16, 16:32, 16:32] = inside[16:24, 32:40, 32:36] = True
    ref = _reference(_label(volumes["truth"] & inside, 6),
                     _label((volumes["pred"] > 0.5) & inside, 6))
    _check(scores["objects"], ref)


def test_per_object_csv(vol, volumes, tmp_path):
    out = tmp_path / "objects.csv"
    result = vol("evaluate", volumes["pred_path"], volumes["truth_path"], "--threshold", "0.5",
                 "--per-object", out, "--json", "--block-mb", "0.004")
    assert result.exit_code == 0, result.output
    truth_labels = _label(volumes["truth"], 6)
    ref = _reference(truth_labels, _label(volumes["pred"] > 0.5, 6))
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == json.loads(result.stdout)["objects"]["truth"] == ref["truth"]
    centroids = ndimage.center_of_mass(truth_labels > 0, truth_labels,
                                       range(1, truth_labels.max() + 1))
    by_size = sorted((int(r["size"]), float(r["centroid_z"]), float(r["centroid_y"]),
                      float(r["centroid_x"]), float(r["best_iou"]), int(r["matched"]))
                     for r in rows)
    expected = sorted((int(ref["sizes"][t]), *centroids[t - 1], ref["best"][t],
                       int(t in ref["matched_ids"])) for t in range(1, ref["truth"] + 1))
    np.testing.assert_allclose(np.array(by_size), np.array(expected), atol=1e-3)

    table = vol("evaluate", volumes["pred_path"], volumes["truth_path"], "--threshold", "0.5",
                "--per-object", out, "--overwrite")
    assert f"{ref['matched']} of {ref['truth']} truth objects matched" in table.stdout
    again = vol("evaluate", volumes["pred_path"], volumes["truth_path"], "--threshold", "0.5",
                "--per-object", out)
    assert again.exit_code == 2 and len(again.stderr.strip().splitlines()) == 1
    inside = vol("evaluate", volumes["pred_path"], volumes["truth_path"], "--threshold", "0.5",
                 "--per-object", f"{volumes['truth_path']}/objects.csv")
    assert inside.exit_code == 2 and "inside" in inside.stderr


@pytest.mark.parametrize("args", [["--iou", "0"], ["--iou", "1.5"], ["--connectivity", "8"]])
def test_bad_object_options_are_one_line(vol, volumes, args):
    result = vol("evaluate", volumes["pred_path"], volumes["truth_path"], "--threshold", "0.5",
                 *args)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_non_integer_truth_has_no_objects(vol, volumes, tmp_path):
    t = write_image(tmp_path / "f.zarr", volumes["pred"], chunks=(8, 8, 8))
    result = vol("-q", "evaluate", volumes["pred_path"], t, "--threshold", "0.5")
    assert result.exit_code == 2
    assert result.stderr.startswith("vol: error: TRUTH holds non-integer values")
    assert len(result.stderr.strip().splitlines()) == 1
