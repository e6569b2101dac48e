"""Relative paths on a cluster whose workers run in another folder (``--cluster ADDRESS``).

The shared cluster's workers are moved to a folder of their own, as those of
an external scheduler would be; every command then runs from another
folder with relative paths and must read and write the files named there.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import zarr
from predict_models import save_torchscript, tiny

from volumetric.engine import RunOptions
from volumetric.ops.convert import convert
from volumetric.ops.info import image_info
from volumetric.ops.predict import predict
from volumetric.ops.predict_plan import PredictOptions
from volumetric.testing.neurites import neurites, write_neurites

INPUTS = ("raw.h5", "raw.zarr", "mask.zarr", "pred.zarr", "neurites.swc", "tiny.ts")


@pytest.fixture(scope="module")
def inputs(client, tmp_path_factory):
    """The inputs of every command, written with absolute paths."""
    folder = tmp_path_factory.mktemp("inputs")
    h5, swc, _ = write_neurites(folder / "raw.h5", neurites((16, 32, 32), seed=3, foreground=0.05),
                                chunks=(8, 16, 16), progress=False)
    swc.rename(folder / "neurites.swc")
    for name in ("raw", "mask"):
        convert(str(h5), str(folder / f"{name}.zarr"), dataset=name, chunks=(8, 16, 16),
                run=RunOptions(client=client, progress=False))
    save_torchscript(tiny(), folder / "tiny.ts")
    predict(str(folder / "raw.zarr"), str(folder / "pred.zarr"),
            PredictOptions(str(folder / "tiny.ts"), window=(8, 16, 16)),
            run=RunOptions(client=client, progress=False))
    return folder


@pytest.fixture
def elsewhere(client, inputs, tmp_path, monkeypatch):
    """Work in ``tmp_path/"here"`` (which holds the inputs) while the workers run in ``there``."""
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    for name in INPUTS:
        (here / name).symlink_to(inputs / name)
    before = client.run(os.getcwd)
    client.run(os.chdir, str(there))
    monkeypatch.chdir(here)
    yield here, there
    for worker, folder in before.items():
        client.run(os.chdir, folder, workers=[worker])


COMMANDS = {
    "convert": ["convert", "raw.h5/raw", "out.zarr", "--chunks", "8,16,16"],
    "distance": ["distance", "mask.zarr", "out.zarr"],
    "project": ["project", "raw.zarr", "out.zarr", "--axis", "z"],
    "render": ["render", "neurites.swc", "--like", "raw.zarr", "out.zarr"],
    "predict": ["predict", "raw.zarr", "out.zarr", "--model", "tiny.ts", "--mask", "mask.zarr",
                "--window", "8,16,16"],
    "overlay": ["overlay", "raw.zarr", "pred.zarr", "out.zarr"],
    "discover": ["discover", "mask.zarr", "out.json", "--seeds-swc", "neurites.swc",
                 "--min-voxels", "1"],
    "evaluate": ["evaluate", "pred.zarr", "mask.zarr", "--threshold", "0.5", "--json"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_relative_paths_name_files_of_the_callers_folder(vol, elsewhere, command):
    here, there = elsewhere
    result = vol(*COMMANDS[command])
    assert result.exit_code == 0, result.output
    assert os.listdir(there) == []
    if command == "convert":
        assert image_info(str(here / "out.zarr"))["complete"] is True
        np.testing.assert_array_equal(zarr.open_array(here / "out.zarr" / "0")[:],
                                      zarr.open_array(here / "raw.zarr" / "0")[:])
    elif command == "discover":
        assert json.loads((here / "out.json").read_text())["cubes"]
    elif command == "evaluate":
        assert 0 <= json.loads(result.stdout)["dice"] <= 1
    else:
        assert image_info(str(here / "out.zarr"))["complete"] is True
