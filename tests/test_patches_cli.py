"""vol patches: a PNG gallery of sampled, augmented patches."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from ome_images import write_image

from volumetric.kernels.augment import SWITCHES, AugmentConfig
from volumetric_cli.main import vol


def _run(*args):
    return CliRunner().invoke(vol, [str(a) for a in args])


def test_gallery_png(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.zeros((12, 40, 40), np.uint8)
    labels[4:8, 10:30, 18:22] = 1
    raw = write_image(tmp_path / "raw.zarr", (labels * 200 + rng.integers(0, 50, labels.shape))
                      .astype(np.uint8), chunks=(6, 20, 20))
    target = write_image(tmp_path / "t.zarr", labels, chunks=(6, 20, 20))
    out = tmp_path / "gallery.png"
    result = _run("patches", raw, target, out, "--patch", "6,16,16", "--n", "6",
                  "--sampler", "foreground", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "6 patches of [6, 16, 16]" in result.output
    picture = iio.imread(out)
    assert picture.ndim == 3 and picture.shape[1] > picture.shape[0] > 200
    assert picture[..., :3].std() > 20  # not blank
    plain = tmp_path / "plain.png"
    assert _run("patches", raw, target, plain, "--patch", "1,16,16", "--n", "3",
                "--no-augment").exit_code == 0
    assert iio.imread(plain).shape != picture.shape
    grid = ("--patch", "6,16,16", "--n", "50", "--sampler", "grid", "--no-augment")
    refused = _run("patches", raw, target, plain, *grid)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert iio.imread(plain).shape != picture.shape  # untouched
    tiles = _run("patches", raw, target, plain, *grid, "--overwrite")
    assert "18 patches" in tiles.output  # 2 x 3 x 3 tiles, each shown once


def test_gallery_bad_input_is_one_line(tmp_path):
    raw = write_image(tmp_path / "raw.zarr", np.zeros((8, 20, 20), np.uint8))
    other = write_image(tmp_path / "o.zarr", np.zeros((8, 20, 16), np.uint8))
    result = _run("patches", raw, other, tmp_path / "g.png")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "spatial shape" in result.output
    result = _run("patches", raw, raw, tmp_path / "g.png", "--patch", "4,32,32")
    assert result.exit_code == 2 and "larger than raw" in result.output
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("command", ["patches", "train"])
def test_augmentation_options_and_their_documented_defaults(command, tmp_path):
    text = " ".join(_run(command, "-h").output.split())
    d = AugmentConfig()
    for name in SWITCHES:
        assert f"{name} (" in text, name
    for default in (f"p {d.spatial_probability:g}", f"+-{d.rotate_degrees:g} degrees",
                    f"(+-{d.shear:g})", f"sd {d.elastic_magnitude:g} voxels",
                    f"every {d.elastic_spacing})", f"scale 1+-{d.intensity_scale:g}",
                    f"shift +-{d.intensity_shift:g}", f"(sd {d.noise_std:g})",
                    f"together with p {d.intensity_probability:g}"):
        assert default in text, default
    raw = write_image(tmp_path / "raw.zarr", np.zeros((8, 20, 20), np.uint8))
    out = tmp_path / ("g.png" if command == "patches" else "run")
    args = (out,) if command == "patches" else ("--out", out)
    result = _run(command, raw, raw, *args, "--patch", "4,8,8", "--no-aug", "flip,sharpen")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "unknown augmentation 'sharpen'" in result.output and not out.exists()
