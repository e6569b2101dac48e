"""Output options that cannot give a meaningful result are refused before anything is written."""

from __future__ import annotations

import numpy as np
import pytest
from test_overlay import make_inputs
from test_predict import write_image

from predict_models import save_torchscript, tiny


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return str(save_torchscript(tiny(), tmp_path_factory.mktemp("model") / "tiny.pt"))


@pytest.fixture(scope="module")
def small_raw(tmp_path_factory):
    data = np.random.default_rng(2).normal(size=(16, 16, 16)).astype(np.float32)
    return write_image(tmp_path_factory.mktemp("raw") / "raw.zarr", data, chunks=(8, 8, 8))


def refused(result, option: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vol: error: ") and option in lines[0], lines
    return lines[0]


@pytest.mark.parametrize("args, option", [
    (["--clip", "-5"], "--clip"),
    (["--clip", "0"], "--clip"),
    (["--clip", "nan"], "--clip"),
    (["--clip", "inf"], "--clip"),
    (["--threshold", "nan"], "--threshold"),
    (["--threshold", "inf"], "--threshold"),
    (["--threshold", "-inf"], "--threshold"),
    (["--window", "8,8,8", "--overlap", "0.99"], "--overlap"),  # a step under one voxel
    (["--window", "32,32,32", "--overlap", "0.95"], "--overlap"),  # 4492x the windows
])
def test_predict_refuses_meaningless_outputs(vol, tmp_path, small_raw, model_file, args, option):
    out = tmp_path / "p.zarr"
    raw = small_raw
    if "32,32,32" in args:
        raw = write_image(tmp_path / "big.zarr", np.zeros((64, 64, 64), np.float32))
    result = vol("predict", raw, out, "--model", model_file, "--device", "cpu", *args)
    refused(result, option)
    assert not out.exists()


def test_predict_warns_of_a_heavy_overlap(vol, tmp_path, small_raw, model_file):
    out = tmp_path / "p.zarr"
    result = vol("predict", small_raw, out, "--model", model_file, "--device", "cpu",
                 "--window", "4,4,4", "--overlap", "0.75", "--batch", "512")
    assert result.exit_code == 0, result.output
    assert "--overlap 0.75: 2197 windows, 34x as many as without overlap" in result.stderr
    quiet = vol("predict", small_raw, tmp_path / "q.zarr", "--model", model_file, "--device",
                "cpu", "--window", "4,4,4", "--overlap", "0.5", "--batch", "512")
    assert quiet.exit_code == 0 and "as many as without overlap" not in quiet.stderr


@pytest.mark.parametrize("args, option", [
    (["--clip", "nan"], "--clip"),
    (["--clip", "inf"], "--clip"),
    (["--clip", "-1"], "--clip"),
    (["--power", "nan"], "--power"),
    (["--power", "inf"], "--power"),
])
def test_overlay_refuses_meaningless_outputs(vol, tmp_path, args, option):
    _, raw_path, _, pred_path = make_inputs(tmp_path, shape=(8, 16, 16))
    out = tmp_path / "o.zarr"
    refused(vol("overlay", raw_path, pred_path, out, *args), option)
    assert not out.exists()


@pytest.mark.parametrize("args, option", [
    (["--clip", "nan"], "--clip"),
    (["--clip", "inf"], "--clip"),
    (["--clip", "-2"], "--clip"),
    (["--clip", "3", "--power", "nan"], "--power"),
])
def test_distance_refuses_meaningless_outputs(vol, tmp_path, args, option):
    mask = np.zeros((8, 8, 8), np.uint8)
    mask[4, 4, 4] = 1
    np.save(tmp_path / "m.npy", mask)
    out = tmp_path / "d.zarr"
    refused(vol("distance", tmp_path / "m.npy", out, *args), option)
    assert not out.exists()


@pytest.mark.parametrize("command", ["evaluate", "discover"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_thresholds_must_be_finite(vol, tmp_path, command, value):
    data = np.zeros((8, 8, 8), np.float32)
    data[2:5, 2:5, 2:5] = 1
    path = write_image(tmp_path / "a.zarr", data, chunks=(4, 4, 4))
    if command == "evaluate":
        result = vol("evaluate", path, path, "--threshold", value)
    else:
        result = vol("discover", path, tmp_path / "cubes.json", "--all", "--threshold", value)
    refused(result, "--threshold")
    assert not (tmp_path / "cubes.json").exists()
