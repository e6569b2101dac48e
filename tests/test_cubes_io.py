"""Cube lists: JSON and Zarr-attribute round trips and the checks predict/train rely on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from image_files import write_image
from volumetric.errors import InputError
from volumetric.geometry import Box
from volumetric.io.cubes import CubeList, read_cubes, store_cubes, write_cubes


def _cubes() -> CubeList:
    return CubeList((20, 30, 40), (8, 16, 16), ((0, 0, 0), (2, 1, 2)), {"cubes_read": 9})


def test_json_round_trip_and_geometry(tmp_path):
    write_cubes(tmp_path / "c.json", _cubes())
    cubes = read_cubes(tmp_path / "c.json", shape=(20, 30, 40))
    assert cubes == _cubes()
    assert cubes.boxes() == [Box((0, 0, 0), (8, 16, 16)), Box((16, 16, 32), (20, 30, 40))]
    assert cubes.touches(Box((7, 15, 15), (9, 17, 17)))
    assert not cubes.touches(Box((8, 0, 0), (16, 16, 16)))


def test_zarr_attribute_round_trip(tmp_path):
    path = write_image(tmp_path / "raw.zarr", np.zeros((20, 30, 40), np.uint8))
    store_cubes(path, _cubes())
    assert read_cubes(path, shape=(20, 30, 40)).cubes == _cubes().cubes


@pytest.mark.parametrize("data, message", [
    ([1, 2], "expected a JSON object"),
    ({"shape": [20, 30, 40], "cubes": []}, "missing cube_shape"),
    ({"shape": [20, 30, 40], "cube_shape": [8, 16], "cubes": []}, "invalid cube_shape"),
    ({"shape": [20, 30, 40], "cube_shape": [8, 16, 16], "cubes": [[3, 0, 0]]},
     "outside the cube grid"),
    ({"shape": [20, 30, 40], "cube_shape": [8, 16, 16], "cubes": [["a", 0, 0]]},
     "must hold integers"),
])
def test_malformed_lists_are_refused(tmp_path, data, message):
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=message):
        read_cubes(tmp_path / "c.json")


def test_other_volume_or_missing_list_is_refused(tmp_path):
    write_cubes(tmp_path / "c.json", _cubes())
    with pytest.raises(InputError, match=r"shape \(20, 30, 40\), not \(20, 30, 41\)"):
        read_cubes(tmp_path / "c.json", shape=(20, 30, 41))
    path = write_image(tmp_path / "raw.zarr", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(InputError, match="has no stored cube list"):
        read_cubes(path)
    with pytest.raises(InputError, match="no such file"):
        read_cubes(tmp_path / "missing.json")
