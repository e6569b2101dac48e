"""Synthetic data: determinism, box independence, ground-truth consistency, files and CLI."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
import tifffile

from volumetric.errors import DestinationError, InputError
from volumetric.geometry import BlockGrid
from volumetric.io.destination import replacing
from volumetric.io.swc import read_swc
from volumetric.testing.frames import BACKGROUND, frames, write_frames
from volumetric.testing.mito import labels_path, mito, write_mito
from volumetric.testing.neurites import neurites, write_neurites
from volumetric.testing.zstack import output_paths, write_zstack, zstack


def assemble(render, shape, block):
    """Each output of ``render(box)`` assembled from the boxes of a grid of ``block``."""
    parts = None
    for box in BlockGrid(shape, block).boxes():
        outputs = render(box)
        if parts is None:
            parts = [np.zeros(shape, dtype=o.dtype) for o in outputs]
        for whole, out in zip(parts, outputs):
            whole[box.slices] = out
    return parts


# --- neurites ----------------------------------------------------------------------------------

def test_neurites_same_seed_same_volume():
    a, b, c = (neurites((24, 40, 36), seed=s) for s in (3, 3, 4))
    raw_a, mask_a = a.render()
    raw_b, mask_b = b.render()
    assert np.array_equal(raw_a, raw_b) and np.array_equal(mask_a, mask_b)
    assert np.array_equal(a.skeleton().xyz, b.skeleton().xyz)
    assert not np.array_equal(raw_a, c.raw())


@pytest.mark.parametrize("block", [(7, 11, 13), (24, 17, 40), (1, 40, 36)])
def test_neurites_boxes_assemble_to_the_whole(block):
    volume = neurites((24, 40, 36), voxel_size=(2.0, 1.0, 1.0), count=3, seed=1)
    raw, mask = volume.render()
    assert mask.any()
    got_raw, got_mask, mask_only = assemble(
        lambda box: (*volume.render(box), volume.mask(box)), volume.shape, block)
    assert np.array_equal(got_raw, raw)
    assert np.array_equal(got_mask, mask) and np.array_equal(mask_only, mask)


def test_neurites_tubes_are_brighter_and_sparse():
    volume = neurites((64, 64, 64), seed=2)
    raw, mask = volume.render()
    fraction = mask.mean()
    assert 0.001 < fraction < 0.01
    inside, outside = raw[mask == 1].astype(float), raw[mask == 0].astype(float)
    assert inside.mean() > outside.mean() + 100
    assert abs(outside.mean() - 100) < 5  # Poisson background of 100 photons
    assert set(np.unique(mask)) == {0, 1}


def test_neurites_count_sets_the_number_of_trees():
    volume = neurites((32, 48, 48), count=5, seed=0)
    assert int((volume.trees.parent < 0).sum()) == 5


def test_neurites_files_and_swc_nodes_inside_mask(tmp_path):
    voxel = (0.5, 0.5, 0.5)
    volume = neurites((40, 48, 44), voxel_size=voxel, seed=6)
    h5, swc, fraction = write_neurites(tmp_path / "n.h5", volume, chunks=(16, 16, 16),
                                       progress=False)
    assert swc == tmp_path / "n.swc"
    raw, mask = volume.render()
    with h5py.File(h5, "r") as f:
        for name, dtype, expected in (("raw", np.uint16, raw), ("mask", np.uint8, mask)):
            ds = f[name]
            assert ds.dtype == dtype and ds.shape == volume.shape and ds.chunks == (16, 16, 16)
            assert ds.attrs["axes"] == "zyx"
            assert np.allclose(ds.attrs["element_size_um"], voxel)
            assert np.array_equal(ds[:], expected)
    assert fraction == pytest.approx(mask.mean())
    skeleton = read_swc(swc)
    assert len(skeleton) == len(volume.trees.radius)
    index = np.rint(skeleton.zyx / voxel).astype(int)  # SWC x, y, z = voxel index * voxel size
    inside = np.all((index >= 0) & (index < volume.shape), axis=1)
    assert inside.sum() > 10
    assert mask[tuple(index[inside].T)].all()


def test_neurites_rejects_bad_parameters(tmp_path):
    with pytest.raises(InputError, match="shape"):
        neurites((10, 10))
    with pytest.raises(InputError, match="voxel size"):
        neurites((10, 10, 10), voxel_size=(1, 0, 1))
    with pytest.raises(InputError, match="HDF5"):
        write_neurites(tmp_path / "n.tif", neurites((8, 8, 8)), progress=False)
    assert not list(tmp_path.iterdir())


# --- frames ------------------------------------------------------------------------------------

def _centroid_and_axis(image):
    """Intensity centroid (x, y, z) and in-plane principal axis angle of a (X, Y, Z) image."""
    w = np.clip(image.astype(float) - BACKGROUND - 50, 0, None)
    x, y, z = np.indices(w.shape)
    m = w.sum()
    cx, cy, cz = (w * x).sum() / m, (w * y).sum() / m, (w * z).sum() / m
    sxx, syy = (w * (x - cx) ** 2).sum() / m, (w * (y - cy) ** 2).sum() / m
    sxy = (w * (x - cx) * (y - cy)).sum() / m
    return np.array([cx, cy, cz]), 0.5 * np.arctan2(2 * sxy, sxx - syy)


def test_frames_move_as_the_stored_transforms():
    movie = frames((1, 64, 64, 8), 6, nuclei=80, seed=4)
    c0, a0 = _centroid_and_axis(movie.frame(0)[0])
    inverse0 = np.linalg.inv(movie.transforms[0])
    moved = 0.0
    for k in range(1, movie.count):
        relative = movie.transforms[k] @ inverse0
        ck, ak = _centroid_and_axis(movie.frame(k)[0])
        assert np.allclose(ck, (relative @ np.r_[c0, 1])[:3], atol=0.2)
        angle = np.arctan2(relative[1, 0], relative[0, 0])
        assert abs(np.rad2deg(ak - a0 - angle)) < 1.5
        moved = max(moved, np.abs(relative[:3, 3]).max())
    assert moved > 3  # the brain really moves, by much more than the tolerance


def test_frames_are_deterministic_and_activity_varies():
    a, b = frames((2, 32, 32, 6), 4, seed=9), frames((2, 32, 32, 6), 4, seed=9)
    assert np.array_equal(a.frame(3), b.frame(3))
    assert np.array_equal(a.transforms, b.transforms)
    assert not np.array_equal(a.frame(0)[1], a.frame(3)[1])


def _digest(movie):
    """sha256 of every frame, every frame's positions and the transforms."""
    h = hashlib.sha256()
    for k in range(movie.count):
        h.update(movie.frame(k).tobytes())
        h.update(movie.positions(k).tobytes())
    h.update(movie.transforms.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("args, kwargs, digest", [  # digests of the generator before the bend
    (((2, 40, 36, 6), 3), {"nuclei": 30, "seed": 2},
     "0da8d12c02cf35cefacaf78e1cb97e3b7a17c8c65358c5fd18b629b968d12429"),
    (((1, 32, 40, 5), 3), {"nuclei": 20, "seed": 5, "affine": 0.05},
     "6378a477f4b7cdf576ca2a7cf2c3af1360645dbf744b47dc850f53a8fcd6dfe8"),
])
def test_frames_without_bend_are_unchanged(args, kwargs, digest):
    movie = frames(*args, **kwargs)
    assert movie.bend is None
    assert _digest(movie) == digest
    assert _digest(frames(*args, **kwargs, bend=0.0)) == digest


def test_bend_moves_positions_by_a_bounded_smooth_non_affine_amount():
    shape, bend = (1, 96, 80, 8), 0.05
    movie = frames(shape, 30, nuclei=60, seed=8, affine=0.04, bend=bend)
    rigid = frames(shape, 30, nuclei=60, seed=8, affine=0.04)
    for name in ("nuclei", "sigma", "brightness", "activity", "transforms"):
        assert np.array_equal(getattr(movie, name), getattr(rigid, name))  # its own stream
    side, half_length = np.mean(shape[1:3]), 0.22 * shape[1]
    across, strain = bend * side, 2 * bend
    slope = np.pi * across / half_length + strain  # bound on the displacement's gradient
    residuals = []
    for k in range(movie.count):
        before, after = rigid.positions(k), movie.positions(k)
        assert np.array_equal(movie.affine_positions(k), before)
        shift = after - before
        assert np.array_equal(shift[:, 2], np.zeros(len(shift)))  # in-plane only
        assert np.linalg.norm(shift, axis=1).max() <= across + strain * half_length / np.pi
        gap = np.linalg.norm(before[:, None, :2] - before[None, :, :2], axis=2)
        change = np.linalg.norm(shift[:, None, :2] - shift[None, :, :2], axis=2)
        assert np.all(change <= slope * gap + 1e-9)  # smooth: nearby nuclei move alike
        design = np.c_[before[:, :2], np.ones(len(before))]
        fit = design @ np.linalg.lstsq(design, after[:, :2], rcond=None)[0]
        residuals.append(np.linalg.norm(fit - after[:, :2], axis=1).mean())
    shifts = np.stack([movie.positions(k) - rigid.positions(k) for k in range(movie.count)])
    assert np.abs(shifts).max() > 0.4 * across  # the head really bends
    assert max(residuals) > 0.15 * across  # and no affine map undoes the bend
    assert np.abs(shifts.mean(axis=0)).max() < 0.25 * across  # it swings around zero


def test_rendered_nuclei_sit_at_their_bent_positions():
    movie = frames((1, 96, 96, 12), 10, nuclei=6, seed=2, bend=0.1)
    checked, far = 0, 0
    for k in range(movie.count):
        image = movie.frame(k)[0].astype(float) - BACKGROUND
        bent, straight = movie.positions(k), movie.affine_positions(k)
        for i in range(len(bent)):
            # A window around both candidate positions, clear of every other nucleus' blob.
            mid, half = (bent[i] + straight[i]) / 2, np.abs(bent[i] - straight[i]) / 2
            lo = np.floor(mid - half - 3.5 * movie.sigma[i]).astype(int)
            hi = np.ceil(mid + half + 3.5 * movie.sigma[i]).astype(int) + 1
            others = np.delete(np.arange(len(bent)), i)
            reach = 3 * movie.sigma[others]
            overlap = (np.floor(bent[others] - reach) < hi) & (np.ceil(bent[others] + reach) >= lo)
            if overlap[:, :2].all(axis=1).any() or np.any(lo < 0) or np.any(hi > image.shape):
                continue
            window = image[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
            grid = np.indices(window.shape).reshape(3, -1).T + lo
            centroid = (window.reshape(-1, 1) * grid).sum(axis=0) / window.sum()
            assert np.linalg.norm(centroid - bent[i]) < 0.5
            if np.linalg.norm(bent[i] - straight[i]) > 1.5:
                assert np.linalg.norm(centroid - straight[i]) > 1.2
                far += 1
            checked += 1
    assert checked >= 10 and far >= 4


def test_frames_reject_bad_motion_amounts():
    for name, value in (("bend", -0.01), ("bend", float("nan")), ("affine", float("inf")),
                        ("rotation", -1.0), ("bend", "much")):
        with pytest.raises(InputError, match=name):
            frames((1, 16, 16, 4), 2, **{name: value})


def test_frames_file_converts_to_a_time_series(tmp_path, vol):
    import zarr

    from volumetric.io.sources import open_source

    movie = frames((2, 40, 36, 6), 5, nuclei=30, seed=2)
    path = write_frames(tmp_path / "worm.h5", movie, progress=False)
    with h5py.File(path, "r") as f:
        assert sorted(f["frames"]) == [f"frame_{k}" for k in range(5)]
        assert f["frames/frame_4"].shape == (2, 40, 36, 6) and f["frames/frame_4"].dtype == np.uint16
        assert np.array_equal(f["transforms"][:], movie.transforms)
        assert "convention" in f["transforms"].attrs
        assert np.array_equal(f["nuclei"][:], movie.nuclei)
        assert f["landmarks"].attrs["axes"] == "xyz"
        assert np.array_equal(f["landmarks"][:], np.stack([movie.positions(k) for k in range(5)]))
    assert open_source(str(path)).native_axes == "tcxyz"  # from the frames' axes attribute
    result = vol("convert", path, tmp_path / "worm.zarr", "--axes", "cxyz")
    assert result.exit_code == 0, result.output
    stored = zarr.open_array(str(tmp_path / "worm.zarr" / "0"), mode="r")
    assert stored.shape == (5, 2, 6, 36, 40)
    expected = np.stack([movie.frame(k) for k in range(5)]).transpose(0, 1, 4, 3, 2)
    assert np.array_equal(stored[:], expected)


def test_frame_group_detection_ignores_small_metadata_only(tmp_path):
    from volumetric.io.sources import Hdf5FrameStack, open_source

    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        for k in range(3):
            f[f"frames/frame_{k}"] = np.zeros((4, 5, 6), np.uint8)
        f["transforms"] = np.zeros((3, 4, 4))
    assert isinstance(open_source(str(path)), Hdf5FrameStack)
    with h5py.File(path, "a") as f:  # per frame smaller than a frame, though larger in all
        f["landmarks"] = np.zeros((3, 30, 3))
    assert isinstance(open_source(str(path)), Hdf5FrameStack)
    with h5py.File(path, "a") as f:
        f["big"] = np.zeros((8, 8, 8), np.uint8)
    with pytest.raises(InputError, match="--dataset"):
        open_source(str(path))


# --- mito --------------------------------------------------------------------------------------

def test_mito_boxes_assemble_and_labels_match_the_image():
    volume = mito((12, 70, 60), seed=3)
    image, labels = volume.render()
    got_image, got_labels = assemble(volume.render, volume.shape, (5, 33, 17))
    assert np.array_equal(got_image, image) and np.array_equal(got_labels, labels)
    assert set(np.unique(labels)) - {0} <= set(range(1, len(volume.centres) + 1))
    assert 0.02 < (labels > 0).mean() < 0.3
    assert image[labels > 0].mean() < image[labels == 0].mean() - 40
    assert np.array_equal(mito((12, 70, 60), seed=3).render()[0], image)


def test_mito_tiffs(tmp_path):
    volume = mito((10, 48, 40), seed=1)
    image_path, label_path = write_mito(tmp_path / "em.tif", volume, progress=False)
    assert label_path == labels_path(image_path) == tmp_path / "em_labels.tif"
    image, labels = volume.render()
    for path, expected in ((image_path, image), (label_path, labels)):
        with tifffile.TiffFile(path) as tif:
            assert len(tif.pages) == 10 and tif.series[0].axes == "ZYX"
            data = tif.asarray()
        assert data.dtype == expected.dtype and np.array_equal(data, expected)


# --- zstack ------------------------------------------------------------------------------------

def test_zstack_defocus_series_and_target(tmp_path):
    stacks = zstack((64, 72), 3, seed=5)
    bright, fluo = stacks.sample(1)
    assert bright.shape == (7, 64, 72) and fluo.shape == (64, 72)
    # Contrast grows away from focus and swaps sign across it.
    spread = bright.astype(float).std(axis=(1, 2))
    assert spread[3] < spread[0] / 2 and spread[3] < spread[-1] / 2
    centred = bright.astype(float) - bright[3].mean()
    assert np.corrcoef(centred[0].ravel(), centred[-1].ravel())[0, 1] < -0.5
    _, nuclei = stacks.phase_and_nuclei(1)
    assert fluo[nuclei > 300].mean() > fluo[nuclei == 0].mean() + 300

    paths = write_zstack(tmp_path / "cells.tif", stacks, progress=False)
    assert paths == output_paths(tmp_path / "cells")
    saved_bright, saved_fluo = (tifffile.imread(p) for p in paths)
    assert saved_bright.shape == (3, 7, 64, 72) and saved_bright.dtype == np.uint16
    assert saved_fluo.shape == (3, 64, 72) and saved_fluo.dtype == np.uint16
    assert np.array_equal(saved_bright[1], bright) and np.array_equal(saved_fluo[1], fluo)


# --- outputs and CLI ---------------------------------------------------------------------------

def test_interrupted_or_refused_writes_leave_nothing(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), replacing([target]) as (tmp,):
        tmp.write_bytes(b"partial")
        raise RuntimeError("interrupted")
    assert not list(tmp_path.iterdir())
    target.write_bytes(b"keep")
    with pytest.raises(DestinationError, match="--overwrite"), replacing([target]):
        pass
    assert target.read_bytes() == b"keep"


def test_cli_neurites_then_convert(tmp_path, vol):
    import zarr

    out = tmp_path / "n.h5"
    result = vol("synth", "neurites", out, "--shape", "20,36,28", "--voxel-size", "2,1,1",
                 "--chunks", "8,16,16", "--seed", "5", "--neurites", "2")
    assert result.exit_code == 0, result.output
    assert out.exists() and (tmp_path / "n.swc").exists()
    result = vol("convert", out, tmp_path / "mask.zarr", "--dataset", "mask")
    assert result.exit_code == 0, result.output
    expected = neurites((20, 36, 28), voxel_size=(2, 1, 1), count=2, seed=5).mask()
    assert np.array_equal(zarr.open_array(str(tmp_path / "mask.zarr" / "0"), mode="r")[:],
                          expected)
    attrs = zarr.open_group(str(tmp_path / "mask.zarr"), mode="r").attrs.asdict()
    scale = attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [2.0, 1.0, 1.0]


def test_cli_frames_with_motion_options(tmp_path, vol):
    from volumetric.io.sources import open_source

    out = tmp_path / "w.h5"  # many tiny frames: the landmarks hold more values than one frame
    result = vol("synth", "frames", out, "--frames", "30", "--shape", "1,16,16,4",
                 "--nuclei", "20", "--rotation", "10", "--affine", "0.03", "--bend", "0.05",
                 "--seed", "4")
    assert result.exit_code == 0, result.output
    movie = frames((1, 16, 16, 4), 30, nuclei=20, seed=4, rotation=10, affine=0.03, bend=0.05)
    with h5py.File(out, "r") as f:
        assert f["landmarks"].shape == (30, 20, 3) and f["landmarks"].dtype == np.float64
        assert f["landmarks"].size > 16 * 16 * 4
        assert np.array_equal(f["landmarks"][:], np.stack([movie.positions(k) for k in range(30)]))
        assert np.array_equal(f["transforms"][:], movie.transforms)
        assert np.array_equal(f["frames/frame_29"][:], movie.frame(29))
    assert open_source(str(out)).native_shape == (30, 1, 16, 16, 4)


@pytest.mark.parametrize("args, message", [
    (("neurites", "x.h5", "--shape", "10,10"), "shape"),
    (("neurites", "x.h5", "--shape", "a,b,c"), "integers"),
    (("frames", "x.txt"), "HDF5"),
    (("frames", "x.h5", "--bend", "-0.1"), "bend must be a non-negative finite number"),
    (("frames", "x.h5", "--bend", "nan"), "bend must be a non-negative finite number"),
    (("frames", "x.h5", "--affine", "inf"), "affine must be a non-negative finite number"),
    (("frames", "x.h5", "--rotation", "-5"), "rotation must be a non-negative finite number"),
    (("frames", "x.h5", "--bend", "some"), "--bend"),
    (("mito", "x.h5"), "TIFF"),
    (("zstack", "cells", "--shape", "0,4"), "positive"),
])
def test_cli_bad_arguments_exit_2(tmp_path, vol, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = vol("synth", *args)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_cli_synth_mito_and_zstack(tmp_path, vol):
    result = vol("synth", "mito", tmp_path / "em.tif", "--shape", "6,32,40", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert tifffile.imread(tmp_path / "em_labels.tif").shape == (6, 32, 40)
    result = vol("synth", "zstack", tmp_path / "cells", "--samples", "2", "--shape", "32,48")
    assert result.exit_code == 0, result.output
    assert tifffile.imread(tmp_path / "cells_brightfield.tif").shape == (2, 7, 32, 48)
    result = vol("synth", "mito", tmp_path / "em.tif", "--shape", "6,32,40")
    assert result.exit_code == 2 and "--overwrite" in result.output
