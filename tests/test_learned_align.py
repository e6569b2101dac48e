"""Learned matching: warped training pairs, `vol train-matcher`, `vol align --method learned`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr

import volumetric
from volumetric.kernels.registration import warp as scipy_warp
from volumetric.models.checkpoint import model_from_checkpoint, read_checkpoint
from volumetric.models.matching import GeometricMatcher, grid, grid_distance, grid_loss
from volumetric.models.warps import identity_theta, transform_points, warp
from volumetric.ops.align_learned import affine_theta, map_positions, pixel_matrix, warp_planes
from volumetric.ops.common import open_input
from volumetric.testing.frames import frames, write_frames
from volumetric.train.warp_pairs import (
    LandmarkMeter,
    RandomWarp,
    WarpPairs,
    random_warp,
)

SHAPE = (2, 64, 48, 4)  # C, X, Y, Z: frames of 48 x 64 (y, x)
SIZE = "32,40"
TINY = ["--size", SIZE, "--features", "4", "--depth", "2", "--batch", "4",
        "--pairs-per-frame", "2", "--val-pairs", "4"]


@pytest.fixture(scope="module")
def worm(tmp_path_factory, client):
    """A 5-frame recording converted to a tczyx OME-Zarr."""
    d = tmp_path_factory.mktemp("learned")
    movie = frames(SHAPE, 5, nuclei=60, seed=4)
    h5 = write_frames(d / "worm.h5", movie, progress=False)
    volumetric.convert(str(h5), str(d / "worm.zarr"), axes="cxyz",
                       run=volumetric.RunOptions(client=client, progress=False))
    return d


def _pairs(worm, **options) -> WarpPairs:
    source = open_input(str(worm / "worm.zarr"), what="FRAMES")
    settings = {"times": range(4), "pairs": 12, "channels": (0, 1), "size": (40, 48), "seed": 1}
    return WarpPairs(source, **{**settings, **options})


def test_warped_copy_shows_the_frame_where_the_true_map_says(worm):
    pairs = _pairs(worm, with_landmarks=True)
    differences = []
    for index in range(len(pairs)):
        item = pairs[index]
        frame, warped = item["image"][:2], item["image"][2:]
        inside = item["landmarks_mask"] > 0
        assert inside.sum() >= 3
        at_truth = warp(frame[None], item["landmarks_true"][inside][None, None])[0, 0, 0]
        at_landmarks = warp(warped[None], item["landmarks"][inside][None, None])[0, 0, 0]
        differences.append(float((at_truth - at_landmarks).abs().mean()))
        assert item["target"].shape == (400, 2)
    # the noise (standard deviation up to 1/40 of the range) is the only difference
    assert np.mean(differences) < 0.03
    identity = pairs[0]["target"]
    assert float((identity - grid()).abs().max()) > 0.01  # every pair is warped


def test_pairs_depend_on_seed_epoch_and_index_only(worm):
    first, again = _pairs(worm), _pairs(worm)
    torch.testing.assert_close(first[3]["image"], again[3]["image"])
    again.set_epoch(1)
    assert not torch.equal(first[3]["target"], again[3]["target"])
    fixed, fixed_later = _pairs(worm, fixed=True), _pairs(worm, fixed=True)
    fixed_later.set_epoch(5)
    torch.testing.assert_close(fixed[2]["target"], fixed_later[2]["target"])


def test_warps_choose_two_to_four_augmentations_in_the_lab_ranges():
    rng = np.random.default_rng(0)
    counts, names = [], set()
    for _ in range(200):
        w = random_warp(rng)
        counts.append(len(w.steps))
        for name, p in w.steps:
            names.add(name)
            if name == "rotate":
                assert p[0] in (-30.0, -15.0, 15.0, 30.0)
            if name == "shear":
                assert max(abs(v) for v in p) <= 10
            if name == "zoom":
                assert all(1.1 <= z <= 1.2 for z in p[:2])
            if name == "noise":
                assert 0 <= p[0] <= 1 / 40
    assert set(counts) == {2, 3, 4}
    assert names == {"shear", "rotate", "distort", "zoom", "noise"}


def test_a_rotation_maps_points_as_a_rotation_on_a_non_square_image():
    w = RandomWarp((("rotate", (30.0,)),), aspect=(1.0, 0.5))
    points = torch.tensor([[0.5, 0.0], [0.0, 1.0]])  # 0.5 and 0.5 of the longer side away
    moved = w.points(points) * torch.tensor([1.0, 0.5])
    assert torch.allclose(moved.norm(dim=1), torch.tensor([0.5, 0.5]), atol=1e-6)


@pytest.mark.parametrize("kind", ["affine", "tps"])
def test_grid_distance_equals_the_grid_loss_for_a_transformation_of_the_kind(kind):
    generator = torch.Generator().manual_seed(0)
    size = 6 if kind == "affine" else 18
    true = identity_theta(kind, 3) + 0.1 * torch.randn(3, size, generator=generator)
    predicted = identity_theta(kind, 3) + 0.1 * torch.randn(3, size, generator=generator)
    moved_true = transform_points(true, grid(), kind)
    torch.testing.assert_close(grid_distance(predicted, moved_true),
                               grid_loss(predicted, true, kind))
    assert float(grid_distance(true, moved_true)) < 1e-10


def test_landmark_meter_scores_pixels_of_the_frame():
    meter = LandmarkMeter((100, 200))  # H, W: PCK tolerance 10 pixels
    points = torch.tensor([[[0.0, 0.0], [0.5, 0.5]]])
    true = points + torch.tensor([0.05, 0.0])  # 5 pixels along x (0.05 * 200 / 2)
    meter.add(identity_theta("affine"), {"target": transform_points(identity_theta("affine"),
                                                                     grid(), "affine"),
                                         "landmarks": points, "landmarks_true": true,
                                         "landmarks_mask": torch.ones(1, 2)})
    row = meter.result()
    assert row["val_loss"] == pytest.approx(0.0, abs=1e-12)
    assert row["val_landmark_px"] == pytest.approx(5.0, rel=1e-5)
    assert row["val_pck"] == 1.0


def test_pixel_matrix_round_trip_and_warp_match_the_classical_convention():
    shape = (48, 64)
    theta = [0.95, -0.2, 0.1, 0.15, 1.05, -0.05]
    matrix = pixel_matrix(theta, shape)
    assert affine_theta(matrix, shape) == pytest.approx(theta)
    image = np.random.default_rng(0).random(shape)
    image = scipy_warp(image, np.eye(3))  # float64, unchanged
    ours = warp_planes(image[None], matrix)[0]
    theirs = scipy_warp(image, matrix)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(ours[inner] - theirs[inner]).max() < 1e-9


def _constant_matcher(path, kind: str, theta: list[float], channels=(0, 1), size=(40, 48)):
    """A matcher checkpoint that always outputs ``theta`` (head weights zero, bias theta)."""
    from volumetric.models.checkpoint import save_checkpoint

    net = GeometricMatcher(kind, (len(channels), *size), features=4, depth=2,
                           head_features=(4, 4))
    with torch.no_grad():
        net.head.linear.bias.copy_(torch.tensor(theta))
    config = {"kind": kind, "input_shape": [len(channels), *size], "features": 4, "depth": 2,
              "head_features": [4, 4], "output_activation": "none"}
    path.mkdir()
    save_checkpoint(path / "model.pt", net, architecture="matcher", model_config=config,
                    spatial_dims=2, in_channels=2 * len(channels), out_channels=len(theta),
                    preprocess={"normalize": "percentile", "channels": list(channels),
                                "size": list(size)},
                    target={"kind": "matcher", "transform": kind})
    return path


def test_align_applies_what_the_matchers_predict_affine_then_tps(vol, worm, tmp_path):
    affine = [0.98, 0.05, 0.04, -0.03, 1.02, -0.02]
    tps = list(0.03 * np.sin(np.arange(18)))
    first = _constant_matcher(tmp_path / "aff", "affine", affine)
    second = _constant_matcher(tmp_path / "tps", "tps", tps)
    out = tmp_path / "aligned.zarr"
    result = vol("align", worm / "worm.zarr", out, "--method", "learned",
                 "--matcher", f"{first},{second}", "--reference", "1")
    assert result.exit_code == 0, result.output
    records = json.loads((out / "transforms.json").read_text())
    assert [r["t"] for r in records] == list(range(5))
    source = zarr.open_array(str(worm / "worm.zarr" / "0"), mode="r")[:]
    aligned = zarr.open_array(str(out / "0"), mode="r")[:]
    frame_shape = source.shape[-2:]
    for r in records:
        if r["t"] == 1:  # the reference itself
            assert "tps" not in r and np.allclose(r["matrix"], np.eye(3))
            np.testing.assert_array_equal(aligned[1], source[1])
            continue
        np.testing.assert_allclose(r["matrix"], pixel_matrix(affine, frame_shape), atol=1e-5)
        np.testing.assert_allclose(r["tps"], tps, atol=1e-6)
        planes = source[r["t"]].reshape(-1, *frame_shape)
        expected = warp_planes(planes, np.array(r["matrix"]), r["tps"])
        np.testing.assert_array_equal(aligned[r["t"]].reshape(expected.shape), expected)


def test_train_matcher_writes_a_run_that_align_reads_and_resumes(vol, worm, tmp_path):
    run = tmp_path / "run"
    result = vol("train-matcher", worm / "worm.zarr", "--model", "tps", "--out", run,
                 "--steps", "2", *TINY)
    assert result.exit_code == 0, result.output
    assert {"config.json", "metrics.csv", "curves.png", "model.pt", "last.pt"} <= {
        p.name for p in run.iterdir()}
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_loss", "val_loss", "val_landmark_px", "val_landmark_p90_px",
            "val_pck"} <= set(header)
    net = model_from_checkpoint(read_checkpoint(run / "model.pt"))
    assert isinstance(net, GeometricMatcher) and net.kind == "tps"
    assert net.input_shape == (2, 32, 40)
    assert "--resume" in vol("train-matcher", worm / "worm.zarr", "--model", "tps", "--out",
                             run, "--steps", "2", *TINY).output
    aligned = vol("align", worm / "worm.zarr", tmp_path / "a.zarr", "--method", "learned",
                  "--matcher", run)
    assert aligned.exit_code == 0, aligned.output
    assert "learned" in aligned.output


def test_an_interrupted_run_resumes_exactly(worm, tmp_path, monkeypatch):
    from volumetric.ops.train_matcher import MatcherData, train_matcher
    from volumetric.train import TrainSettings, rundir

    data = MatcherData(str(worm / "worm.zarr"), size=(32, 40), pairs_per_frame=2, val_pairs=4)
    settings = TrainSettings(loss="grid", batch=4, steps=4, seed=3)
    config = {"features": 4, "depth": 2}
    whole = train_matcher(data, tmp_path / "whole", settings=settings, config=config,
                          progress=False)
    assert whole.result.steps == 4 and whole.result.epochs == 2
    plot = rundir.plot_curves

    def stop_after_the_first_epoch(run_dir, history):
        plot(run_dir, history)
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "plot_curves", stop_after_the_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_matcher(data, tmp_path / "cut", settings=settings, config=config, progress=False)
    monkeypatch.setattr(rundir, "plot_curves", plot)
    resumed = train_matcher(data, tmp_path / "cut", settings=settings, config=config,
                            resume=True, progress=False)
    assert resumed.result.steps == 4
    assert [r["val_loss"] for r in resumed.result.history] == \
        [r["val_loss"] for r in whole.result.history]
    first = read_checkpoint(tmp_path / "whole" / "last.pt")["state_dict"]
    second = read_checkpoint(tmp_path / "cut" / "last.pt")["state_dict"]
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_training_reduces_the_landmark_error(worm, tmp_path):
    from volumetric.ops.train_matcher import MatcherData, train_matcher
    from volumetric.train import TrainSettings

    data = MatcherData(str(worm / "worm.zarr"), size=(40, 48), pairs_per_frame=16,
                       val_pairs=16, val_fraction=0.2)
    settings = TrainSettings(loss="grid", batch=8, steps=60, lr=1e-3, seed=0)
    report = train_matcher(data, tmp_path / "run", model="affine", settings=settings,
                           config={"features": 8, "depth": 3}, progress=False)
    best = report.result.history[report.result.best_epoch - 1]
    untrained = LandmarkMeter((48, 64))  # the identity, on the same validation pairs
    pairs = _pairs(worm, times=[4], pairs=16, seed=1, fixed=True, with_landmarks=True,
                   size=(40, 48))
    for index in range(len(pairs)):
        untrained.add(identity_theta("affine"), {k: v[None] for k, v in pairs[index].items()})
    before = untrained.result()
    assert best["val_loss"] < 0.7 * before["val_loss"]
    assert best["val_landmark_px"] < 0.8 * before["val_landmark_px"]


@pytest.mark.parametrize(("args", "message"), [
    (["--channels", "5", "--size", SIZE], "channel(s) 5 do not exist"),
    (["--size", "64,64"], "smaller than the matcher input"),
])
def test_train_matcher_refuses_bad_input(vol, worm, tmp_path, args, message):
    run = tmp_path / "run"
    result = vol("train-matcher", worm / "worm.zarr", "--out", run, "--steps", "1", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (run / "model.pt").exists()


def test_align_refuses_a_matcher_that_does_not_fit(vol, worm, tmp_path, client):
    big = _constant_matcher(tmp_path / "big", "affine", [1, 0, 0, 0, 1, 0], size=(96, 96))
    one = _constant_matcher(tmp_path / "one", "affine", [1, 0, 0, 0, 1, 0], channels=(3,))
    tps = _constant_matcher(tmp_path / "tps", "tps", [0.0] * 18)
    unet = tmp_path / "unet.pt"
    from volumetric.models.checkpoint import save_checkpoint
    from volumetric.models.registry import build_model

    save_checkpoint(unet, build_model("unet2d", in_channels=1, out_channels=1),
                    architecture="unet2d", model_config={"in_channels": 1, "out_channels": 1},
                    spatial_dims=2, in_channels=1, out_channels=1)
    cases = [
        (f"{big}", [], "smaller than the matcher input"),
        (f"{one}", [], "channel(s) 3 do not exist"),
        (f"{tps},{tps}", [], "affine then TPS"),
        (f"{unet}", [], "not a matcher"),
        (f"{tps}", ["--reference", "previous"], "with a TPS matcher give a reference frame"),
    ]
    for spec, extra, message in cases:
        out = tmp_path / "out.zarr"
        result = vol("align", worm / "worm.zarr", out, "--method", "learned", "--matcher", spec,
                     *extra)
        assert result.exit_code == 2 and message in result.output, (spec, result.output)
        assert not out.exists()


def test_mapped_positions_are_where_the_warp_samples():
    shape = (40, 56)
    matrix = pixel_matrix([0.97, 0.08, 0.05, -0.06, 1.03, 0.02], shape)
    tps = list(0.04 * np.cos(np.arange(18)))
    image = np.zeros(shape)
    image[25, 30] = 1.0  # a point in the moving frame
    aligned = warp_planes(image[None], matrix, tps)[0]
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    reference = np.column_stack([rows.ravel(), cols.ravel()]).astype(float)
    moved = map_positions(reference, matrix, tps, shape)
    nearest = np.argmin(np.linalg.norm(moved - [25, 30], axis=1))
    # the aligned image shows the point where the mapping takes a reference pixel onto it
    assert aligned.ravel()[nearest] > 0.3
    assert np.allclose(map_positions(reference[:5], matrix, None, shape),
                       reference[:5] @ matrix[:2, :2].T + matrix[:2, 2])
