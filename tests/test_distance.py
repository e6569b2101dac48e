"""vol distance: block-wise clipped and out-of-core unclipped maps against scipy on whole arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi

from image_files import write_image
from interruption import killed_before_completion, unmark
from volumetric.engine import RunOptions
from volumetric.geometry import BlockGrid
from volumetric.io.ome import open_image
from volumetric.kernels.edt_clip import distance_map, shape_distance
from volumetric.kernels.edt_separable import axis_distance_sq, parabolic_envelope
from volumetric.ops.distance import distance

SPACING = (2.0, 0.7, 1.1)
CHUNKS = (8, 16, 16)


def _mask() -> np.ndarray:
    """Sparse objects, several touching block faces and the volume's faces; some blocks empty."""
    rng = np.random.default_rng(7)
    m = np.zeros((37, 45, 50), dtype=np.uint8)
    m[rng.random(m.shape) < 0.0015] = 1
    m[:, 30:, 33:] = 0  # a column of empty blocks
    m[7:9, 15:17, 15:17] = 1  # straddles block faces along every axis
    m[0, 3:7, 10] = 1  # on the volume's first face
    m[36, 44, 49] = 1  # the last corner
    m[16, 0:45, 2] = 1  # a line across all blocks along y
    return m


def _reference(m: np.ndarray, target: str, spacing=SPACING) -> np.ndarray:
    fg = m != 0
    to_fg = ndi.distance_transform_edt(~fg, sampling=spacing)
    to_bg = ndi.distance_transform_edt(fg, sampling=spacing)
    return {"foreground": to_fg, "background": to_bg, "signed": to_fg - to_bg,
            "signed-inverted": to_bg - to_fg}[target]


def _flags(target: str) -> dict:
    return {"signed": target.startswith("signed"),
            "invert": target in ("background", "signed-inverted")}


@pytest.fixture(scope="module")
def mask_image(tmp_path_factory):
    m = _mask()
    path = tmp_path_factory.mktemp("distance") / "mask.zarr"
    return m, write_image(path, m, voxel_size=SPACING, chunks=CHUNKS)


@pytest.mark.parametrize("target", ["foreground", "background", "signed", "signed-inverted"])
def test_kernel_matches_scipy(target):
    m = _mask()
    np.testing.assert_allclose(distance_map(m != 0, SPACING, target=target),
                               _reference(m, target), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("target", ["foreground", "background", "signed", "signed-inverted"])
@pytest.mark.parametrize("clip", [0.5, 3.5, 40.0])
def test_kernel_within_clip_matches_scipy_clipped(target, clip):
    m = np.zeros((30, 40, 35), dtype=np.uint8)
    m[3:5, 30:33, 2] = 1  # targets near one corner: the transform runs on a small box
    m[4, 36, 6] = 1
    near = distance_map(m != 0, SPACING, target=target, within=clip)
    np.testing.assert_allclose(shape_distance(near, clip=clip),
                               shape_distance(_reference(m, target), clip=clip),
                               rtol=1e-6, atol=1e-5)
    if target == "foreground" and clip < 40:
        assert np.isinf(near).any()  # voxels beyond the grown box were not transformed


def test_separable_passes_match_scipy_and_brute_force():
    rng = np.random.default_rng(3)
    m = rng.random((23, 31, 17)) < 0.01
    f = axis_distance_sq(m, 0, SPACING[0])
    for axis in (1, 2):
        f = parabolic_envelope(f, axis, SPACING[axis])
    np.testing.assert_allclose(np.sqrt(f), ndi.distance_transform_edt(~m, sampling=SPACING),
                               rtol=1e-12, atol=1e-12)
    g = rng.random((40, 6)) * 30
    g[rng.random(g.shape) < 0.5] = np.inf
    g[:, 0] = np.inf  # a line with no finite value stays infinite
    positions = np.arange(40) * 0.7
    brute = np.min(g[None, :, :] + ((positions[:, None] - positions[None, :]) ** 2)[:, :, None],
                   axis=1)
    np.testing.assert_allclose(parabolic_envelope(g, 0, 0.7), brute)


@pytest.mark.parametrize("target, shaping", [
    ("foreground", {}), ("background", {}), ("signed", {}), ("signed-inverted", {}),
    ("foreground", {"power": 0.5, "scale_to_clip": True}), ("signed", {"power": 2.0}),
])
def test_clipped_blockwise_equals_whole_array(client, tmp_path, mask_image, target, shaping):
    m, path = mask_image
    clip = 3.5
    report = distance(path, str(tmp_path / "d.zarr"), clip=clip, **_flags(target), **shaping,
                      run=RunOptions(block_bytes=1, client=client, progress=False))
    assert report.blocks == 5 * 3 * 4  # chunk-sized blocks, smaller than the volume
    out = zarr.open_array(str(tmp_path / "d.zarr" / "0"))[...]
    expected = shape_distance(_reference(m, target), clip=clip, **shaping)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert out.dtype == np.float32


def test_clipped_skips_empty_blocks_and_keeps_metadata(client, tmp_path, mask_image):
    m, path = mask_image
    report = distance(path, str(tmp_path / "d.zarr"), clip=2.0,
                      run=RunOptions(block_bytes=1, client=client, progress=False))
    assert 0 < report.blocks_written < report.blocks
    image = open_image(tmp_path / "d.zarr")
    assert image.complete and image.meta.voxel_size == SPACING
    assert image.meta.unit == "micrometer" and image.shape == m.shape
    assert image.array(0).fill_value == 2.0
    assert not (tmp_path / "d.zarr" / ".volumetric" / "done").exists()


@pytest.mark.parametrize("target", ["foreground", "signed-inverted"])
def test_unclipped_out_of_core_equals_scipy(client, tmp_path, mask_image, target):
    m, path = mask_image
    report = distance(path, str(tmp_path / "d.zarr"), **_flags(target),
                      run=RunOptions(block_bytes=1, client=client, progress=False))
    assert report.blocks > 3  # every pass ran on several blocks
    out = zarr.open_array(str(tmp_path / "d.zarr" / "0"))[...]
    np.testing.assert_allclose(out, _reference(m, target), rtol=1e-5, atol=1e-4)
    assert not (tmp_path / "d.zarr" / ".volumetric" / "passes").exists()


def test_unclipped_per_channel_2d_with_power(client, tmp_path):
    rng = np.random.default_rng(1)
    m = (rng.random((2, 40, 30)) < 0.01).astype(bool)
    path = write_image(tmp_path / "m.zarr", m, axes="cyx", voxel_size=(0.5, 2.0), chunks=(1, 8, 8))
    distance(path, str(tmp_path / "d.zarr"), power=2.0,
             run=RunOptions(block_bytes=1, client=client, progress=False))
    out = zarr.open_array(str(tmp_path / "d.zarr" / "0"))[...]
    for c in range(2):
        expected = ndi.distance_transform_edt(~m[c], sampling=(0.5, 2.0)) ** 2
        np.testing.assert_allclose(out[c], expected, rtol=1e-5, atol=1e-4)


def test_empty_mask_is_clip_or_infinite(client, tmp_path):
    path = write_image(tmp_path / "m.zarr", np.zeros((10, 12, 14), np.uint8), chunks=(5, 6, 7))
    distance(path, str(tmp_path / "c.zarr"), clip=4.0,
             run=RunOptions(client=client, progress=False))
    assert np.all(zarr.open_array(str(tmp_path / "c.zarr" / "0"))[...] == 4.0)
    assert not any(p.name.startswith("c") for p in (tmp_path / "c.zarr" / "0").iterdir())
    distance(path, str(tmp_path / "u.zarr"), run=RunOptions(client=client, progress=False))
    assert np.all(np.isinf(zarr.open_array(str(tmp_path / "u.zarr" / "0"))[...]))


def test_cli_clip_and_refuse_existing(vol, tmp_path, mask_image):
    m, path = mask_image
    out = tmp_path / "d.zarr"
    result = vol("distance", path, out, "--clip", "3", "--invert")
    assert result.exit_code == 0, result.output
    expected = np.minimum(_reference(m, "background"), 3)
    np.testing.assert_allclose(zarr.open_array(str(out / "0"))[...], expected, atol=1e-5)
    again = vol("distance", path, out, "--clip", "3")
    assert again.exit_code == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("args, message", [
    (["--clip", "-2"], "--clip must be a positive distance"),
    (["--clip", "inf"], "--clip must be a positive distance, got inf"),
    (["--clip", "nan"], "--clip must be a positive distance, got nan"),
    (["--normalize"], "--normalize needs --clip"),
    (["--clip", "2", "--power", "0"], "--power must be positive"),
])
def test_cli_bad_options(vol, tmp_path, mask_image, args, message):
    result = vol("distance", mask_image[1], tmp_path / "d.zarr", *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d.zarr").exists()


def test_cli_non_binary_mask_names_values(vol, tmp_path):
    labels = np.zeros((16, 16, 16), np.uint16)
    labels[2, 2, 2], labels[9, 9, 9], labels[3, 4, 5] = 1, 7, 300
    path = write_image(tmp_path / "labels.zarr", labels, chunks=(8, 8, 8))
    result = vol("distance", path, tmp_path / "d.zarr", "--clip", "2")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("vol: error")]
    assert len(errors) == 1 and "not binary" in errors[0]
    assert "values 0, 1, 7, 300 seen" in errors[0]
    attrs = json.loads((tmp_path / "d.zarr" / "zarr.json").read_text())["attributes"]
    assert attrs["volumetric"]["complete"] is False


@pytest.mark.parametrize("clip", [["--clip", "2"], []])
def test_cli_mask_binary_per_block_only_fails_again_on_rerun(vol, tmp_path, clip):
    labels = np.zeros((16, 16, 16), np.uint8)
    labels[2, 2, 2], labels[12, 12, 12] = 1, 2  # each block alone looks binary
    path = write_image(tmp_path / "labels.zarr", labels, chunks=(8, 8, 8))
    for _ in range(2):
        result = vol("-q", "distance", path, tmp_path / "d.zarr", *clip, "--block-mb", "0.001")
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines() == [
            f"vol: error: MASK {path} is not binary: values 0, 1, 2 seen in different blocks"]
    attrs = json.loads((tmp_path / "d.zarr" / "zarr.json").read_text())["attributes"]
    assert attrs["volumetric"]["complete"] is False


def test_cli_missing_voxel_size_states_assumption(vol, tmp_path):
    m = np.zeros((12, 12, 12), np.uint8)
    m[6, 6, 6] = 1
    np.save(tmp_path / "m.npy", m)
    result = vol("distance", tmp_path / "m.npy", tmp_path / "d.zarr", "--clip", "5")
    assert result.exit_code == 0
    assert "no voxel size; assuming 1 per axis" in result.stderr
    expected = np.minimum(ndi.distance_transform_edt(m == 0), 5)
    np.testing.assert_allclose(zarr.open_array(str(tmp_path / "d.zarr" / "0"))[...], expected,
                               atol=1e-5)


def test_interrupted_run_resumes_only_unfinished_blocks(client, tmp_path, mask_image):
    m, path = mask_image
    out = tmp_path / "d.zarr"
    run = RunOptions(block_bytes=1, client=client, progress=False)
    with killed_before_completion():
        distance(path, str(out), clip=3.0, run=run)
    complete = zarr.open_array(str(out / "0"))[...]
    # Turn it into a run killed half way: half of the blocks marked done, the data of one
    # done and one unfinished block lost.
    boxes = list(BlockGrid(m.shape, CHUNKS).boxes())
    unmark(out, "distance", [box.key() for box in boxes[len(boxes) // 2:]])
    array = zarr.open_array(str(out / "0"), mode="r+")
    array[boxes[0].slices] = -1.0
    array[boxes[-1].slices] = -1.0
    report = distance(path, str(out), clip=3.0, run=run)
    assert report.resumed and report.blocks_written <= len(boxes) - len(boxes) // 2
    result = zarr.open_array(str(out / "0"))[...]
    assert np.all(result[boxes[0].slices] == -1.0)  # marked done: not recomputed
    np.testing.assert_array_equal(result[boxes[-1].slices], complete[boxes[-1].slices])
    assert open_image(out).complete
