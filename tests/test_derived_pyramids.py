"""Pyramid levels of derived images: each level equals the downsampling of the whole level below.

Shapes are odd and blocks smaller than the arrays, so pyramid tasks meet
ragged edges and cells cut by the volume's far faces.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from image_files import write_image
from interruption import done_keys, killed_before_completion, unmark
from predict_models import save_torchscript, tiny

from volumetric.engine import RunOptions
from volumetric.errors import InputError
from volumetric.geometry import BlockGrid
from volumetric.io.ome import open_image
from volumetric.io.swc import Skeleton, write_swc
from volumetric.kernels.downsample import downsample
from volumetric.ops.distance import distance
from volumetric.ops.predict import predict
from volumetric.ops.predict_plan import PredictOptions
from volumetric.ops.render import render

SHAPE = (21, 35, 27)
CHUNKS = (8, 8, 8)


def assert_levels(path, n: int, method: str) -> list[np.ndarray]:
    """Every level ``k > 0`` of the complete image ``path`` from level ``k - 1`` read whole."""
    image = open_image(path)
    assert image.complete and len(image.levels) == n
    arrays = [zarr.open_array(f"{path}/{lv.path}", mode="r")[...] for lv in image.levels]
    for prev, spec, below, level in zip(image.levels, image.levels[1:], arrays, arrays[1:]):
        step = tuple(a // b for a, b in zip(spec.factors, prev.factors))
        assert level.shape == spec.shape
        np.testing.assert_array_equal(level, downsample(below, step, method=method))
    return arrays


@pytest.fixture(scope="module")
def mask(tmp_path_factory):
    rng = np.random.default_rng(5)
    m = (rng.random(SHAPE) < 0.004).astype(np.uint8)
    m[10, 3:30, 4] = 1
    return write_image(tmp_path_factory.mktemp("pyramids") / "mask.zarr", m, chunks=CHUNKS)


@pytest.fixture(scope="module")
def swc(tmp_path_factory):
    path = tmp_path_factory.mktemp("pyramids") / "n.swc"
    write_swc(path, Skeleton(
        ids=np.array([1, 2, 3, 4]), types=np.full(4, 3), parents=np.array([-1, 1, 2, 2]),
        xyz=np.array([[2.0, 3, 1], [14, 17, 9], [25, 31, 19], [5, 30, 12]]),
        radius=np.array([2.0, 1.5, 1.0, 2.5])))
    return str(path)


def run_options(client) -> RunOptions:
    return RunOptions(block_bytes=1, client=client, progress=False)


@pytest.mark.parametrize("clip", [3.0, None])
def test_distance_levels_are_means_of_the_level_below(client, tmp_path, mask, clip):
    report = distance(mask, str(tmp_path / "d.zarr"), clip=clip, signed=True, levels=3,
                      run=run_options(client))
    arrays = assert_levels(tmp_path / "d.zarr", 3, "mean")
    assert [a.shape for a in arrays] == [SHAPE, (11, 18, 14), (6, 9, 7)]
    assert report.image.levels[2].factors == (4, 4, 4)


def test_render_levels_stay_binary_and_resume(client, tmp_path, mask, swc):
    like, out = mask, tmp_path / "r.zarr"
    render(swc, like, str(tmp_path / "whole.zarr"), levels=3, run=run_options(client))
    expected = assert_levels(tmp_path / "whole.zarr", 3, "nearest")
    assert all(set(np.unique(a)) == {0, 1} for a in expected)

    with killed_before_completion():
        render(swc, like, str(out), levels=3, run=run_options(client))
    # A run killed half way through level 1: half its blocks unmarked, their data lost.
    boxes = list(BlockGrid(expected[1].shape, CHUNKS).boxes())
    unmark(out, "level-1", [box.key() for box in boxes[len(boxes) // 2:]])
    zarr.open_array(str(out / "1"), mode="r+")[...] = 7
    report = render(swc, like, str(out), levels=3, run=run_options(client))
    assert report.resumed and open_image(out).complete
    resumed = [zarr.open_array(f"{out}/{k}", mode="r")[...] for k in range(3)]
    assert np.all(resumed[1][boxes[0].slices] == 7)  # marked done: not recomputed
    for box in boxes[len(boxes) // 2:]:
        np.testing.assert_array_equal(resumed[1][box.slices], expected[1][box.slices])
    np.testing.assert_array_equal(resumed[0], expected[0])
    np.testing.assert_array_equal(resumed[2], expected[2])


def test_interrupted_distance_levels_resume_to_the_same_result(client, tmp_path, mask):
    out = str(tmp_path / "d.zarr")
    with killed_before_completion():
        distance(mask, out, clip=3.0, levels=3, run=run_options(client))
    unmark(out, "level-2", done_keys(out, "level-2"))
    zarr.open_array(f"{out}/2", mode="r+")[...] = -1.0
    assert distance(mask, out, clip=3.0, levels=3, run=run_options(client)).resumed
    assert_levels(out, 3, "mean")


@pytest.mark.parametrize("threshold, method", [(None, "mean"), (0.5, "nearest")])
def test_predict_levels(client, tmp_path, threshold, method):
    rng = np.random.default_rng(2)
    raw = write_image(tmp_path / "raw.zarr", rng.normal(size=SHAPE).astype(np.float32),
                      chunks=CHUNKS)
    model = save_torchscript(tiny(), tmp_path / "tiny.pt")
    options = PredictOptions(str(model), window=(8, 8, 8), chunks=CHUNKS, block=CHUNKS,
                             device="cpu", threshold=threshold, levels=2)
    predict(raw, str(tmp_path / "p.zarr"), options, run=RunOptions(client=client, progress=False))
    arrays = assert_levels(tmp_path / "p.zarr", 2, method)
    assert arrays[1].shape == (2, 11, 18, 14)  # channels are never reduced


def test_overlay_levels_and_bad_levels(vol, tmp_path, mask):
    rng = np.random.default_rng(3)
    raw = write_image(tmp_path / "raw.zarr", rng.integers(0, 900, SHAPE, dtype=np.uint16),
                      chunks=CHUNKS)
    out = tmp_path / "o.zarr"
    result = vol("overlay", raw, mask, out, "--kind", "probability", "--levels", "2",
                 "--block-mb", "0.001")
    assert result.exit_code == 0, result.output
    assert_levels(out, 2, "mean")
    for command in (["overlay", raw, mask], ["distance", mask], ["render", "x.swc", "--like", raw]):
        result = vol(*command, tmp_path / "bad.zarr", "--levels", "0")
        assert result.exit_code == 2
        assert len(result.stderr.strip().splitlines()) == 1 and "--levels" in result.stderr
    with pytest.raises(InputError, match="--levels must be at least 1"):
        distance(mask, str(tmp_path / "bad.zarr"), levels=0)
    with pytest.raises(InputError, match="--levels must be at least 1"):
        PredictOptions("model.pt", levels=0).check()
