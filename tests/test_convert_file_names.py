"""`vol convert` writes OME-Zarr folders: an output named like an image file is refused."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from volumetric_cli.main import vol as vol_command


def test_convert_refuses_an_image_file_name(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 8, 8), np.uint8))
    for name in ("overlay.tif", "x.v3draw", "y.mp4", "z.png"):
        result = CliRunner().invoke(vol_command, ["convert", str(tmp_path / "a.npy"),
                                                   str(tmp_path / name)])
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and "vol export" in result.output
        assert not (tmp_path / name).exists()
