"""vol render: block-wise SWC rasterisation against a direct whole-volume rendering."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from image_files import write_image
from volumetric.engine import RunOptions
from volumetric.io.ome import open_image
from volumetric.io.swc import Skeleton, write_swc
from volumetric.ops.render import render

SPACING = (2.0, 1.0, 0.5)
SHAPE = (20, 40, 60)


def _skeleton() -> Skeleton:
    """A branching tree in physical x, y, z, with one root outside the volume and a lone node."""
    xyz = np.array([
        [5.0, 5.0, 5.0], [20.0, 12.0, 10.0], [28.0, 30.0, 22.0], [10.0, 35.0, 36.0],
        [29.5, 20.0, 30.0], [-4.0, 20.0, 20.0], [15.0, 15.0, 35.0],
    ])
    return Skeleton(
        ids=np.arange(1, 8), types=np.full(7, 3), xyz=xyz,
        radius=np.array([3.0, 1.5, 2.5, 0.2, 1.0, 2.0, 4.0]),
        parents=np.array([-1, 1, 2, 2, 3, 1, -1]),
    )


def _direct_rendering(skeleton: Skeleton) -> np.ndarray:
    """Voxel by voxel over the whole volume: inside a capsule with linearly varying radius."""
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(SHAPE, SPACING)],
                                indexing="ij"), axis=-1)
    out = np.zeros(SHAPE, dtype=bool)
    row = {int(i): k for k, i in enumerate(skeleton.ids)}
    radius = np.maximum(skeleton.radius, min(SPACING) / 2)
    for k, parent in enumerate(skeleton.parents):
        j = row.get(int(parent), k)
        a, b = skeleton.zyx[k], skeleton.zyx[j]
        ab = b - a
        t = np.zeros(SHAPE)
        if ab @ ab > 0:
            t = np.clip(((grid - a) @ ab) / (ab @ ab), 0, 1)
        nearest = a + t[..., None] * ab
        r = radius[k] + t * (radius[j] - radius[k])
        out |= np.linalg.norm(grid - nearest, axis=-1) <= r
    return out


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("render")
    data = np.zeros((2, *SHAPE), dtype=np.uint16)
    return write_image(root / "raw.zarr", data, voxel_size=SPACING, chunks=(1, 8, 16, 16))


def test_blockwise_render_equals_direct_rendering(client, tmp_path, raw):
    skeleton = _skeleton()
    write_swc(tmp_path / "n.swc", skeleton)
    report = render(str(tmp_path / "n.swc"), raw, str(tmp_path / "m.zarr"),
                    run=RunOptions(block_bytes=1, client=client, progress=False))
    out = zarr.open_array(str(tmp_path / "m.zarr" / "0"))[...]
    expected = _direct_rendering(skeleton)
    assert out.dtype == np.uint8 and out.shape == SHAPE
    assert expected.sum() > 500
    assert np.array_equal(out.astype(bool), expected)
    assert report.voxels == expected.sum()
    assert report.blocks < 3 * 3 * 4  # untouched blocks are not rendered
    image = open_image(tmp_path / "m.zarr")
    assert image.meta.axes == "zyx" and image.meta.voxel_size == SPACING
    assert image.meta.unit == "micrometer" and image.complete


def test_tube_radius_is_physical(client, tmp_path, raw):
    # A straight segment along x at z = 20 um, y = 20 um, radius 4 um.
    skeleton = Skeleton(np.array([1, 2]), np.array([3, 3]),
                        np.array([[5.0, 20.0, 20.0], [25.0, 20.0, 20.0]]),
                        np.array([4.0, 4.0]), np.array([-1, 1]))
    write_swc(tmp_path / "t.swc", skeleton)
    render(str(tmp_path / "t.swc"), raw, str(tmp_path / "m.zarr"),
           run=RunOptions(client=client, progress=False))
    out = zarr.open_array(str(tmp_path / "m.zarr" / "0"))[...].astype(bool)
    x = 30  # x = 15 um, the middle of the segment
    assert out[10, 16:25, x].all() and not out[10, 15, x] and not out[10, 25, x]  # y +- 4 voxels
    assert out[8:13, 20, x].all() and not out[7, 20, x] and not out[13, 20, x]  # z +- 2 voxels
    assert out[10, 20, 2:59].all() and not out[10, 20, 1]  # ends are half-spheres: x from 1 um


def test_cli_render_and_bad_swc(vol, tmp_path, raw):
    write_swc(tmp_path / "n.swc", _skeleton())
    result = vol("render", tmp_path / "n.swc", "--like", raw, tmp_path / "m.zarr")
    assert result.exit_code == 0, result.output
    assert "outside RAW's volume" in result.stderr  # the root at x = -4 um
    bad = tmp_path / "bad.swc"
    bad.write_text("1 1 0 0 0 1 -1\n2 3 1 1\n")
    result = vol("render", bad, "--like", raw, tmp_path / "b.zarr")
    assert result.exit_code == 2 and "bad.swc:2: expected 7 fields" in result.stderr
    assert not (tmp_path / "b.zarr").exists()


def test_swc_coordinates_are_in_the_images_physical_frame(client, tmp_path):
    """On an image translated by its NGFF origin, nodes shifted alike draw the same voxels."""
    from dataclasses import replace

    from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image

    origin = (10.0, -4.0, 2.5)
    meta = ImageMeta("zyx", SPACING, "micrometer", origin=origin)
    create_image(tmp_path / "moved.zarr", meta, [LevelSpec("0", SHAPE, (1, 1, 1))],
                 dtype=np.uint16, chunks=(8, 16, 16))
    zarr.open_array(str(tmp_path / "moved.zarr" / "0"), mode="r+")[...] = 1
    finalize_image(tmp_path / "moved.zarr")
    plain = tmp_path / "plain.zarr"
    write_image(plain, np.ones(SHAPE, np.uint16), voxel_size=SPACING, chunks=(8, 16, 16))
    skeleton = _skeleton()
    write_swc(tmp_path / "n.swc", skeleton)
    moved = replace(skeleton, xyz=skeleton.xyz + np.asarray(origin[::-1]))
    write_swc(tmp_path / "moved.swc", moved)
    run = RunOptions(client=client, progress=False)
    render(str(tmp_path / "n.swc"), str(plain), str(tmp_path / "a.zarr"), run=run)
    render(str(tmp_path / "moved.swc"), str(tmp_path / "moved.zarr"), str(tmp_path / "b.zarr"),
           run=run)
    a = zarr.open_array(str(tmp_path / "a.zarr" / "0"))[...]
    b = zarr.open_array(str(tmp_path / "b.zarr" / "0"))[...]
    assert a.any() and np.array_equal(a, b)
