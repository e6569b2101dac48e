"""Reading cube lists: clear errors for malformed files and cubes outside the volume."""

from __future__ import annotations

import json

import pytest

from volumetric.errors import InputError
from volumetric.geometry import Box
from volumetric.io.cubes import read_cubes


def test_read_cubes_and_boxes(tmp_path):
    path = tmp_path / "cubes.json"
    path.write_text(json.dumps({"cube_shape": [8, 16, 16], "cubes": [[0, 1, 2], [2, 0, 0]],
                                "cubes_read": 5}))
    listing = read_cubes(path)
    assert listing.cube_shape == (8, 16, 16) and len(listing.cubes) == 2
    assert listing.boxes((20, 40, 40)) == [Box((0, 16, 32), (8, 32, 40)),
                                           Box((16, 0, 0), (20, 16, 16))]
    with pytest.raises(InputError, match="outside the volume"):
        listing.boxes((16, 40, 40))
    with pytest.raises(InputError, match="3D cubes but the volume is 2D"):
        listing.boxes((40, 40))


@pytest.mark.parametrize("text,message", [
    ("not json", "is not JSON"),
    ('{"cubes": []}', "needs 'cube_shape'"),
    ('{"cube_shape": [8, 0, 8], "cubes": []}', "must be positive"),
    ('{"cube_shape": [8, 8, 8], "cubes": [[1, 2]]}', "every cube needs 3 indices"),
])
def test_malformed_cube_lists(tmp_path, text, message):
    path = tmp_path / "cubes.json"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_cubes(path)
    with pytest.raises(InputError, match="cannot read"):
        read_cubes(tmp_path / "missing.json")
