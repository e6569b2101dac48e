"""``vol predict`` against MONAI's sliding_window_inference on the whole volume.

Blocks are smaller than the volume and ragged at its faces, so windows
straddle block borders; the block-wise result must still equal the single
pass, every window must run exactly once, and interrupted runs must resume.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from interruption import done_keys
from predict_models import FLAKY_FLAG, NaNAbove, Shrinking, evil_checkpoint, save_torchscript, tiny
from scipy import ndimage

from volumetric.engine import RunOptions
from volumetric.geometry import Box
from volumetric.io.intensity import intensity_stats
from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image, open_image
from volumetric.kernels.blending import postprocess, window_weights
from volumetric.kernels.normalize import normalize
from volumetric.models.checkpoint import save_checkpoint
from volumetric.ops.predict import predict
from volumetric.ops.predict_plan import PredictOptions

SHAPE = (40, 44, 36)


def write_image(path: Path, data: np.ndarray, axes: str = "zyx", chunks=None) -> str:
    meta = ImageMeta(axes, (2.0, 0.5, 0.5), "micrometer")
    create_image(path, meta, [LevelSpec("0", data.shape, (1,) * data.ndim)], dtype=data.dtype,
                 chunks=chunks or (16,) * data.ndim)
    zarr.open_array(str(path / "0"), mode="r+")[...] = data
    finalize_image(path)
    return str(path)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(4)
    return (ndimage.gaussian_filter(rng.normal(size=SHAPE), 2) * 300 + 1000).astype(np.float32)


@pytest.fixture(scope="module")
def raw(tmp_path_factory, data):
    return write_image(tmp_path_factory.mktemp("raw") / "raw.zarr", data)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return str(save_torchscript(tiny(), tmp_path_factory.mktemp("model") / "tiny.pt"))


def zscore(data: np.ndarray, raw: str) -> np.ndarray:
    return normalize(data, intensity_stats(zarr.open_array(f"{raw}/0")), "zscore")


def per_axis(overlap, ndim: int) -> tuple[float, ...]:
    overlap = tuple(overlap) if isinstance(overlap, (tuple, list)) else (overlap,)
    return overlap * ndim if len(overlap) == 1 else overlap


def monai(x: np.ndarray, model, window, overlap, mode="gaussian", weight_map=None) -> np.ndarray:
    """MONAI on the whole volume ``x`` (C, ...); size-1 window axes feed a 2D model."""
    from monai.inferers import sliding_window_inference

    overlap = per_axis(overlap, len(window))
    flat = [2 + i for i, w in enumerate(window) if w == 1]

    def predictor(batch):
        out = model(batch.squeeze(flat) if flat else batch)
        for axis in flat:
            out = out.unsqueeze(axis)
        return out

    with torch.no_grad():
        return sliding_window_inference(
            torch.from_numpy(np.ascontiguousarray(x))[None], window, 1, predictor,
            overlap=overlap, mode=mode, roi_weight_map=weight_map,
        )[0].numpy()


def monai_window_count(shape, window, overlap) -> int:
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    size = tuple(max(s, w) for s, w in zip(shape, window))
    interval = _get_scan_interval(size, window, len(size), per_axis(overlap, len(size)))
    return len(dense_patch_slices(size, window, interval))


def run(client, raw, out, model, **options):
    options = {"device": "cpu", **options}
    return predict(str(raw), str(out), PredictOptions(str(model), **options),
                   run=RunOptions(client=client, progress=False))


@pytest.mark.parametrize("mode,window,overlap,chunks,block", [
    ("gaussian", (16, 16, 16), (0.5,), (8, 8, 8), (16, 16, 16)),
    ("constant", (12, 16, 10), (0.25, 0.5, 0.6), (8, 8, 8), (8, 24, 16)),
    ("gaussian", (16, 12, 20), (0.75, 0.3, 0.5), (4, 4, 4), (24, 8, 32)),
])
def test_blockwise_result_equals_monai_on_the_whole_volume(
        client, tmp_path, raw, data, model_file, mode, window, overlap, chunks, block):
    out = tmp_path / "pred.zarr"
    report = run(client, raw, out, model_file, window=window, overlap=overlap, blend=mode,
                 normalize="zscore", chunks=chunks, block=block)
    expected = monai(zscore(data, raw)[None], torch.jit.load(model_file), window, overlap, mode)
    got = zarr.open_array(f"{out}/0")[:]
    assert got.shape == (2, *SHAPE) and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-4
    assert report.evaluations == report.windows == monai_window_count(SHAPE, window, overlap)
    image = open_image(out)
    assert image.complete and image.meta.axes == "czyx"
    assert image.meta.voxel_size == (2.0, 0.5, 0.5) and image.meta.unit == "micrometer"
    assert not (out / ".volumetric").exists() or not any((out / ".volumetric").rglob("*.npy"))


def test_one_worker_gives_the_result_of_two(client, tmp_path, raw, data, model_file):
    """The shared cluster has two workers; here every task is restricted to one of them."""
    import dask
    from distributed import get_task_stream

    window, overlap = (12, 16, 10), (0.25, 0.5, 0.6)
    one = sorted(client.scheduler_info()["workers"])[0]
    with dask.annotate(workers=[one]), get_task_stream(client) as tasks:
        report = run(client, raw, tmp_path / "p.zarr", model_file, window=window,
                     overlap=overlap, normalize="zscore", chunks=(8, 8, 8), block=(8, 24, 16))
    assert {task["worker"] for task in tasks.data} == {one}
    assert report.evaluation_blocks > 2 and report.evaluations == report.windows
    expected = monai(zscore(data, raw)[None], torch.jit.load(model_file), window, overlap)
    assert np.abs(zarr.open_array(f"{tmp_path}/p.zarr/0")[:] - expected).max() < 1e-4


def test_hann_blending_equals_monai_with_the_hann_weight_map(client, tmp_path, raw, data, model_file):
    window = (16, 16, 16)
    run(client, raw, tmp_path / "p.zarr", model_file, window=window, blend="hann",
        normalize="zscore", chunks=(8, 8, 8), block=(16, 16, 24))
    weights = torch.from_numpy(window_weights(window, "hann"))
    expected = monai(zscore(data, raw)[None], torch.jit.load(model_file), window, 0.5,
                     weight_map=weights)
    assert np.abs(zarr.open_array(f"{tmp_path}/p.zarr/0")[:] - expected).max() < 1e-4


def test_volume_thinner_than_the_window_is_padded_as_monai_pads_it(client, tmp_path, model_file):
    thin = np.random.default_rng(1).normal(size=(5, 30, 22)).astype(np.float32)
    np.save(tmp_path / "thin.npy", thin)
    window = (16, 16, 16)
    report = run(client, tmp_path / "thin.npy", tmp_path / "p.zarr", model_file, window=window,
                 chunks=(4, 8, 8), block=(4, 8, 8))
    expected = monai(thin[None], torch.jit.load(model_file), window, 0.5)
    assert np.abs(zarr.open_array(f"{tmp_path}/p.zarr/0")[:] - expected).max() < 1e-4
    assert report.evaluations == monai_window_count(thin.shape, window, (0.5,))


def test_flat_windows_feed_a_2d_model(client, tmp_path, raw, data):
    model = tiny(dims=2)
    path = save_torchscript(model, tmp_path / "flat.pt")
    window = (1, 16, 16)
    run(client, raw, tmp_path / "p.zarr", path, window=window, normalize="zscore",
        chunks=(8, 8, 8), block=(8, 16, 16))
    expected = monai(zscore(data, raw)[None], model, window, 0.5)
    assert np.abs(zarr.open_array(f"{tmp_path}/p.zarr/0")[:] - expected).max() < 1e-4


def test_every_time_point_of_a_series_is_predicted(client, tmp_path):
    rng = np.random.default_rng(5)
    series = (rng.gamma(2.0, 50.0, size=(3, 2, 12, 20, 24))).astype(np.float32)
    raw = write_image(tmp_path / "series.zarr", series, axes="tczyx", chunks=(1, 1, 8, 8, 8))
    model = tiny(in_channels=2, out_channels=1)
    path = save_torchscript(model, tmp_path / "m.pt")
    window = (8, 16, 16)
    report = run(client, raw, tmp_path / "p.zarr", path, window=window, normalize="zscore",
                 chunks=(8, 8, 8), block=(8, 8, 8))
    got = zarr.open_array(f"{tmp_path}/p.zarr/0")[:]
    assert got.shape == (3, 1, 12, 20, 24)
    assert open_image(tmp_path / "p.zarr").meta.axes == "tczyx"
    stats = intensity_stats(zarr.open_array(f"{raw}/0"), channel_axis=1)  # over all time points
    for t in range(3):
        x = np.stack([normalize(series[t, c], {k: stats[k][c] for k in ("mean", "std")}, "zscore")
                      for c in range(2)])
        assert np.abs(got[t] - monai(x, model, window, 0.5)).max() < 1e-4, t
    assert report.evaluations == report.windows == 3 * monai_window_count((12, 20, 24), window,
                                                                           (0.5,))


def test_selected_input_channels_and_several_output_channels(client, tmp_path):
    rng = np.random.default_rng(2)
    stack = (rng.gamma(2.0, 50.0, size=(3, 20, 24, 28))).astype(np.float32)
    raw = write_image(tmp_path / "multi.zarr", stack, axes="czyx", chunks=(1, 8, 8, 8))
    model = tiny(in_channels=2, out_channels=3)
    path = save_torchscript(model, tmp_path / "m.pt")
    window = (8, 16, 16)
    run(client, raw, tmp_path / "p.zarr", path, window=window, channels=(2, 0),
        normalize="percentile", chunks=(8, 8, 8), block=(8, 16, 8))
    stats = intensity_stats(zarr.open_array(f"{raw}/0"), channel_axis=0)
    x = np.stack([normalize(stack[c], {k: stats[k][c] for k in ("low", "high")}, "percentile")
                  for c in (2, 0)])
    expected = monai(x, model, window, 0.5)
    got = zarr.open_array(f"{tmp_path}/p.zarr/0")[:]
    assert got.shape == (3, 20, 24, 28)
    assert np.abs(got - expected).max() < 1e-4


@pytest.mark.parametrize("options", [{"dtype": "uint8"}, {"threshold": 0.5}, {"clip": 0.45},
                                     {"dtype": "float16"}])
def test_stored_types_and_post_processing(client, tmp_path, raw, data, model_file, options):
    window = (16, 16, 16)
    run(client, raw, tmp_path / "p.zarr", model_file, window=window, normalize="zscore",
        chunks=(8, 8, 8), block=(16, 16, 16), **options)
    expected = monai(zscore(data, raw)[None], torch.jit.load(model_file), window, 0.5)
    got = zarr.open_array(f"{tmp_path}/p.zarr/0")[:]
    reference = postprocess(expected, **options)
    assert got.dtype == reference.dtype
    if got.dtype == np.float32:
        assert np.abs(got - reference).max() < 1e-4
    else:  # values on a rounding edge may fall either way
        mismatch = got.astype(np.float32) != reference.astype(np.float32)
        assert mismatch.mean() < 1e-3
        if "threshold" in options:
            assert set(np.unique(got)) == {0, 1}


def write_cubes(path: Path, cubes, cube_shape=(8, 8, 8)) -> str:
    path.write_text(json.dumps({"cube_shape": list(cube_shape), "volume_shape": list(SHAPE),
                                "cubes": [list(c) for c in cubes]}))
    return str(path)


def touching_windows(shape, window, overlap, cubes, cube_shape) -> int:
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    boxes = [Box.from_shape(cube_shape, [i * c for i, c in zip(cube, cube_shape)]) for cube in cubes]
    interval = _get_scan_interval(shape, window, len(shape), per_axis(overlap, len(shape)))
    slices = dense_patch_slices(shape, window, interval)
    return sum(
        any(not Box(tuple(s.start for s in sl), tuple(s.stop for s in sl)).intersect(b).empty
            for b in boxes)
        for sl in slices
    )


def test_sparse_run_only_evaluates_windows_touching_listed_cubes(client, tmp_path, raw, data,
                                                                 model_file):
    cubes = [(0, 0, 0), (3, 4, 2)]
    window = (16, 16, 16)
    report = run(client, raw, tmp_path / "p.zarr", model_file, window=window, normalize="zscore",
                 cubes=write_cubes(tmp_path / "cubes.json", cubes), chunks=(8, 8, 8),
                 block=(16, 16, 16))
    expected_count = touching_windows(SHAPE, window, (0.5,), cubes, (8, 8, 8))
    assert report.evaluations == report.windows == expected_count
    assert expected_count < monai_window_count(SHAPE, window, (0.5,))
    dense = monai(zscore(data, raw)[None], torch.jit.load(model_file), window, 0.5)
    out = zarr.open_array(f"{tmp_path}/p.zarr/0")
    got = out[:]
    inside = np.zeros(SHAPE, dtype=bool)
    for cube in cubes:
        box = Box.from_shape((8, 8, 8), [i * 8 for i in cube])
        assert np.abs(got[(slice(None), *box.slices)] - dense[(slice(None), *box.slices)]).max() < 1e-4
        inside[box.slices] = True
    # outside the cubes only some windows ran: the fill value, not a partial blend
    assert (got[:, ~inside] == 0).all()
    assert not np.allclose(dense[:, ~inside], 0)
    assert out.nchunks_initialized < out.nchunks / 2


def test_where_no_window_ran_the_output_is_the_fill_value(client, tmp_path, raw, data,
                                                          model_file):
    cubes = write_cubes(tmp_path / "cubes.json", [(0, 0, 0)])
    common = {"window": (16, 16, 16), "normalize": "zscore", "chunks": (8, 8, 8),
              "block": (16, 16, 16), "cubes": cubes}
    run(client, raw, tmp_path / "d.zarr", model_file, clip=0.5, **common)
    run(client, raw, tmp_path / "f.zarr", model_file, fill=-1.0, **common)
    clipped = zarr.open_array(f"{tmp_path}/d.zarr/0")
    filled = zarr.open_array(f"{tmp_path}/f.zarr/0")
    assert clipped.fill_value == 0.5 and filled.fill_value == -1.0
    far = (slice(None), slice(24, 40), slice(24, 40), slice(24, 40))  # no window touches it
    assert (clipped[far] == 0.5).all() and (filled[far] == -1.0).all()
    near = (slice(None), slice(0, 8), slice(0, 8), slice(0, 8))
    np.testing.assert_array_equal(np.clip(filled[near], 0, 0.5), clipped[near])


def test_a_mask_selects_cubes_like_a_cube_list(client, tmp_path, raw, model_file):
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[3, 5, 7] = 1
    mask[30, 40, 20] = 1
    mask_path = write_image(tmp_path / "mask.zarr", mask, chunks=(8, 8, 8))
    common = {"window": (16, 16, 16), "normalize": "zscore", "chunks": (8, 8, 8),
              "block": (16, 16, 16)}
    by_mask = run(client, raw, tmp_path / "m.zarr", model_file, mask=mask_path, **common)
    by_cubes = run(client, raw, tmp_path / "c.zarr", model_file,
                   cubes=write_cubes(tmp_path / "cubes.json", [(0, 0, 0), (3, 5, 2)]), **common)
    assert by_mask.evaluations == by_cubes.evaluations
    np.testing.assert_array_equal(zarr.open_array(f"{tmp_path}/m.zarr/0")[:],
                                  zarr.open_array(f"{tmp_path}/c.zarr/0")[:])


def done_markers(out: Path, job: str) -> set[str]:
    return done_keys(out, job)


def test_interrupted_runs_resume_and_equal_the_uninterrupted_run(client, tmp_path, raw, data):
    window = (16, 16, 16)
    options = {"window": window, "normalize": "zscore", "chunks": (8, 8, 8), "block": (8, 8, 8),
               "batch": 2}
    out = tmp_path / "p.zarr"
    FLAKY_FLAG.write_text("6")  # each worker's model fails from its 7th call on
    try:
        with pytest.raises(RuntimeError, match="simulated worker crash"):
            run(client, raw, out, "predict_models:flaky", **options)
    finally:
        FLAKY_FLAG.unlink()
    evaluated_first = done_markers(out, "windows")
    assert 0 < len(evaluated_first) and not open_image(out).complete
    assert not done_markers(out, "blend")

    # Phase 2 fails on the blocks whose chunks cannot be stored (z chunk 1 of channel 0).
    (out / "0" / "c" / "0").mkdir(parents=True, exist_ok=True)
    (out / "0" / "c" / "0" / "1").write_text("in the way")
    with pytest.raises(OSError):
        run(client, raw, out, "predict_models:flaky", **options)
    evaluated_second = done_markers(out, "windows")
    blended = done_markers(out, "blend")
    assert evaluated_first < evaluated_second and 0 < len(blended)
    assert not open_image(out).complete

    (out / "0" / "c" / "0" / "1").unlink()
    report = run(client, raw, out, "predict_models:flaky", **options)
    assert report.resumed and report.evaluations == 0
    assert report.output_blocks > len(blended)
    expected = monai(zscore(data, raw)[None], tiny(), window, 0.5)
    assert np.abs(zarr.open_array(f"{out}/0")[:] - expected).max() < 1e-4
    assert open_image(out).complete and not (out / ".volumetric" / "partials").exists()


def test_checkpoint_gives_the_default_normalisation_and_window(client, tmp_path, raw, data):
    client.run(importlib.import_module, "predict_models")  # registers "test-tiny" on the workers
    model = tiny(out_channels=1)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, architecture="test-tiny", model_config={"out_channels": 1},
                    spatial_dims=3, in_channels=1, out_channels=1,
                    preprocess={"normalize": "zscore"}, training={"patch": [16, 16, 16]})
    report = run(client, raw, tmp_path / "p.zarr", path, chunks=(8, 8, 8), block=(16, 16, 16))
    expected = monai(zscore(data, raw)[None], model, (16, 16, 16), 0.5)
    got = zarr.open_array(f"{tmp_path}/p.zarr/0")[:]
    assert got.shape == (1, *SHAPE) and np.abs(got - expected).max() < 1e-4
    assert report.windows == monai_window_count(SHAPE, (16, 16, 16), (0.5,))


def test_auto_device_is_resolved_on_the_workers(client, tmp_path, raw, model_file, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # this process only
    report = predict(raw, str(tmp_path / "p.zarr"),
                     PredictOptions(model_file, device="auto", window=(16, 16, 16),
                                    chunks=(8, 8, 8)),
                     run=RunOptions(client=client, progress=False))
    assert report.device == "cpu" and open_image(tmp_path / "p.zarr").complete


def test_cli_writes_the_contract_layout(vol, tmp_path, raw, model_file):
    result = vol("predict", raw, tmp_path / "p.zarr", "--model", model_file, "--window", "16,16,16",
                 "--overlap", "0.25", "--blend", "constant", "--normalize", "percentile",
                 "--batch", "3", "--device", "cpu", "--dtype", "uint8", "--chunks", "8,8,8")
    assert result.exit_code == 0, result.output
    assert "window evaluations" in result.output and result.output.rstrip().endswith("on cpu")
    image = open_image(tmp_path / "p.zarr")
    assert image.complete and image.meta.axes == "czyx" and image.shape == (2, *SHAPE)
    assert image.array(0).dtype == np.uint8


def one_line_error(result, match: str) -> None:
    """Exit status 2 and one error line (besides the dashboard link of runs that reached the cluster)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines()
             if line.strip() and not line.startswith("dask dashboard:")]
    assert len(lines) == 1 and lines[0].startswith("vol: error:") and match in lines[0], lines


def not_complete(out: Path) -> bool:
    return not out.exists() or not open_image(out).complete


@pytest.mark.parametrize("case", ["no-pad", "shape", "channels", "nan", "cuda", "unsafe",
                                  "custom checkpoint"])
def test_bad_input_fails_with_one_line(vol, tmp_path, raw, model_file, case):
    out = tmp_path / "p.zarr"
    args = [raw, out, "--model", model_file, "--window", "16,16,16", "--chunks", "8,8,8",
            "--device", "cpu"]
    if case == "no-pad":
        args[args.index("16,16,16")] = "64,16,16"
        args.append("--no-pad")
        match = "larger than the volume"
    elif case == "shape":
        args[3] = str(save_torchscript(Shrinking(), tmp_path / "shrink.pt"))
        match = "must keep the window's spatial shape"
    elif case == "channels":
        args[3] = str(save_torchscript(tiny(in_channels=2), tmp_path / "two.pt"))
        match = ("cannot run on windows of shape (1, 1, 16, 16, 16): Given groups=1, weight of "
                 "size [2, 2, 3, 3, 3], expected input[1, 1, 16, 16, 16] to have 2 channels, but "
                 "got 1 channels instead; choose the input channels with --channels")
    elif case == "nan":
        args[3] = str(save_torchscript(NaNAbove(), tmp_path / "nan.pt"))
        args += ["--normalize", "zscore", "--block", "16,16,16"]
        match = "NaN"
    elif case == "cuda":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        args[-1] = "cuda"
        args += ["--cluster", "local"]
        match = "CUDA is not available"
    elif case == "unsafe":
        torch.save(tiny(), tmp_path / "pickled.pt")
        args[3] = str(tmp_path / "pickled.pt")
        match = "unsafe"
    else:
        args[3] = str(evil_checkpoint(tmp_path / "evil.pt", tmp_path / "ran"))
        match = "--model module:factory --weights"
    result = vol("predict", *args)
    one_line_error(result, match)
    assert not (tmp_path / "ran").exists()
    if case == "nan":
        assert "block [" in result.output
    assert not_complete(out)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_run_model_under_autocast_is_close_to_full_precision(amp):
    from volumetric.kernels.inference import run_model

    torch.manual_seed(0)
    model = torch.nn.Conv3d(1, 2, 3, padding=1).eval()
    batch = torch.randn(2, 1, 8, 8, 8)
    full = run_model(model, batch)
    mixed = run_model(model, batch, amp=amp)
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert full.dtype == torch.float32 and mixed.dtype == low  # autocast took effect
    assert torch.allclose(mixed.float(), full, atol=0.05)
