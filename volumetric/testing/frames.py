"""A moving C. elegans-like brain: many HDF5 frames with known rigid, affine and bending motion.

The brain is a cloud of gaussian nuclei in an ellipsoid elongated along
``x``. Channel 0 is a static nuclear marker; further channels are activity
channels whose per-nucleus brightness oscillates over time. Frame ``k``
shows the brain moved by the transform ``transforms[k]``, a 4x4
homogeneous matrix in the frame's voxel coordinates::

    (x, y, z, 1) in frame k  =  transforms[k] @ (x, y, z, 1) in the reference

i.e. a rotation about the ``z`` axis through the brain's reference centre,
then a translation; with ``affine > 0`` the rotation is preceded by a
smooth per-frame scale and shear in the ``x, y`` plane. With ``bend > 0``
the head also bends: after the affine motion, a smooth non-rigid
displacement of the ``x, y`` plane laid along the head as it lies in frame
``k`` (:mod:`volumetric.testing.bend`: an arch and an S-shaped bend across
its long axis, a gentle compression along it, swinging back and forth
every 6 to 24 frames) moves every nucleus, so::

    positions(k)  =  deform_k(affine_k(reference))

where ``affine_k`` is ``transforms[k]`` (the affine part of the motion) and
``deform_k`` the bend of frame ``k`` (the identity when ``bend = 0``).
Each nucleus is rendered centred on its position (the blobs themselves are
not deformed). The reference positions of the nuclei and the positions in
every frame are stored too. Noise is Poisson, drawn per frame (a frame is
the unit of computation).

File layout written by :func:`write_frames`:

- ``frames/frame_0`` ... ``frames/frame_{n-1}``: uint16, shape ``(C, X, Y, Z)``,
  attributes ``axes = "cxyz"`` and ``element_size_um`` (``x, y, z``);
- ``transforms``: float64 ``(n, 4, 4)``, the affine part, with a ``convention``
  attribute;
- ``nuclei``: float64 ``(k, 3)``, reference ``x, y, z`` voxel positions;
- ``landmarks``: float64 ``(n, k, 3)``, the ``x, y, z`` voxel positions of every
  nucleus in every frame (bend included), attribute ``axes = "xyz"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volumetric.io import HDF5_SUFFIXES, replacing, require_suffix
from volumetric.testing.bend import Bend
from volumetric.testing.params import amount, positive
from volumetric.testing.tiles import rng_for

VOXEL_SIZE_XYZ = (0.5, 0.5, 1.5)
BACKGROUND = 100.0
CONVENTION = (
    "transforms[k] maps reference voxel coordinates (x, y, z, 1) to voxel coordinates "
    "(x, y, z, 1) of frame k: rotation about z through the reference brain centre, "
    "then translation (the affine part of the motion; landmarks holds the positions "
    "including any bend)"
)
NOISE_STREAM = 1
BEND_PERIOD = 12  # frames: the bends swing back and forth with periods of 6 to 24 frames


def _motion(rng: np.random.Generator, n: int, amplitude: float,
            span: int | None = None) -> np.ndarray:
    """A smooth bounded random signal of ``n`` samples: two sinusoids, random periods.

    The periods are 0.5 to 2 times ``span`` samples (default: ``n``, at least 8).
    """
    period = rng.uniform(0.5, 2.0, 2) * (max(n, 8) if span is None else span)
    phase = rng.uniform(0, 2 * np.pi, 2)
    k = np.arange(n)[:, None]
    return amplitude * (np.sin(2 * np.pi * k / period + phase) * [0.7, 0.3]).sum(axis=1)


@dataclass(frozen=True)
class Frames:
    """Synthetic frames, rendered one at a time; build with :func:`frames`.

    Attributes
    ----------
    shape : tuple of int
        Shape of one frame, ``(C, X, Y, Z)``.
    count : int
        Number of frames.
    nuclei : ndarray, shape (k, 3)
        Reference ``x, y, z`` voxel positions.
    sigma : ndarray, shape (k, 3)
        Gaussian widths in voxels.
    brightness : ndarray, shape (k, C)
        Mean peak brightness above background per channel.
    activity : ndarray, shape (k, 2)
        Frequency (cycles per movie) and phase of each nucleus' activity.
    transforms : ndarray, shape (count, 4, 4)
        The affine part of the motion; see the module's docstring.
    seed : int
    bend : Bend, optional
        The non-rigid part of the motion; None: none.
    """

    shape: tuple[int, int, int, int]
    count: int
    nuclei: np.ndarray
    sigma: np.ndarray
    brightness: np.ndarray
    activity: np.ndarray
    transforms: np.ndarray
    seed: int
    bend: Bend | None = None

    def affine_positions(self, index: int) -> np.ndarray:
        """Nuclei positions (``x, y, z`` voxels) in frame ``index`` without the bend."""
        a = self.transforms[index]
        return self.nuclei @ a[:3, :3].T + a[:3, 3]

    def positions(self, index: int) -> np.ndarray:
        """Nuclei positions (``x, y, z`` voxels) in frame ``index``, bend included."""
        moved = self.affine_positions(index)
        return moved if self.bend is None else self.bend.apply(moved, index)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as uint16 ``(C, X, Y, Z)``."""
        size = self.shape[1:]
        t = index / self.count
        level = self.brightness * (1 + 0.6 * np.sin(2 * np.pi * self.activity[:, :1] * t
                                                     + self.activity[:, 1:]))
        level[:, 0] = self.brightness[:, 0]
        mean = np.full(self.shape, BACKGROUND, dtype=np.float64)
        for p, s, b in zip(self.positions(index), self.sigma, level):
            lo = np.maximum(np.floor(p - 3 * s).astype(int), 0)
            hi = np.minimum(np.ceil(p + 3 * s).astype(int) + 1, size)
            if np.any(hi <= lo):
                continue
            g = [np.exp(-0.5 * ((np.arange(a, e) - q) / w) ** 2)
                 for a, e, q, w in zip(lo, hi, p, s)]
            blob = g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]
            mean[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += b[:, None, None, None] * blob
        counts = rng_for(self.seed, NOISE_STREAM, index).poisson(mean)
        return np.minimum(counts, np.iinfo(np.uint16).max).astype(np.uint16)


def frames(
    shape: Sequence[int] = (2, 96, 96, 16), count: int = 20, *, nuclei: int = 120, seed: int = 0,
    rotation: float = 25.0, affine: float = 0.0, bend: float = 0.0, tilt: float = 0.0,
) -> Frames:
    """A moving brain of ``nuclei`` gaussian nuclei over ``count`` frames of ``shape`` (C, X, Y, Z).

    ``rotation`` is the amplitude of the rotation about ``z`` in degrees
    (0: pure translation); ``affine`` the amplitude of the scale and shear
    of the ``x, y`` plane (e.g. 0.08 for up to about 8 %); ``tilt`` the
    amplitude in degrees of rotations about the ``x`` and ``y`` axes (out of
    plane, rigid in micrometres with ``VOXEL_SIZE_XYZ``), applied first; ``bend`` the
    amplitude of the non-rigid bending as a fraction of the frame's side
    (the mean of its ``x`` and ``y`` sizes): e.g. 0.03 bends the head by up
    to about 3 % of the side across its axis and compresses it locally by
    up to 6 % along it. Each amplitude varies smoothly over the frames
    around zero; all four must be non-negative and finite, and the bend is
    one-to-one while ``bend < 0.5``.

    Examples
    --------
    >>> f = frames((2, 48, 40, 8), 3, seed=1)
    >>> f.frame(2).shape, f.transforms.shape
    ((2, 48, 40, 8), (3, 4, 4))
    """
    shape = positive(shape, 4, "frame shape (c, x, y, z)")
    count = positive([count], 1, "number of frames")[0]
    n = positive([nuclei], 1, "number of nuclei")[0]
    rotation, affine = amount(rotation, "rotation"), amount(affine, "affine")
    bend, tilt = amount(bend, "bend"), amount(tilt, "tilt")
    rng = rng_for(seed, 0)
    size = np.asarray(shape[1:], dtype=float)
    centre = (size - 1) / 2
    semi = size * [0.22, 0.12, 0.2]
    direction = rng.standard_normal((n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    points = centre + direction * rng.uniform(0, 1, (n, 1)) ** (1 / 3) * semi
    sigma = np.maximum(size * [1 / 70, 1 / 70, 1 / 12], 0.8) * rng.uniform(0.8, 1.2, (n, 1))
    brightness = rng.uniform(300, 700, (n, shape[0]))
    activity = np.stack([rng.uniform(1, 4, n), rng.uniform(0, 2 * np.pi, n)], axis=1)
    angle = np.deg2rad(_motion(rng, count, rotation))
    shift = np.stack([_motion(rng, count, a) for a in size * [0.12, 0.1, 0.04]], axis=1)
    transforms = np.tile(np.eye(4), (count, 1, 1))
    cos, sin = np.cos(angle), np.sin(angle)
    transforms[:, 0, 0], transforms[:, 0, 1] = cos, -sin
    transforms[:, 1, 0], transforms[:, 1, 1] = sin, cos
    if affine > 0:
        warp_rng = rng_for(seed, 2)
        strain = np.stack([_motion(warp_rng, count, affine) for _ in range(4)], axis=1)
        strain = np.eye(2) + strain.reshape(count, 2, 2)
        transforms[:, :2, :2] = transforms[:, :2, :2] @ strain
    if tilt > 0:  # stream 5: its own (0 brain, 1 noise, 2 affine)
        from scipy.spatial.transform import Rotation

        tilt_rng = rng_for(seed, 5)
        angles = np.stack([_motion(tilt_rng, count, tilt) for _ in range(2)], axis=1)
        um = np.asarray(VOXEL_SIZE_XYZ)
        turn = Rotation.from_euler("xy", angles, degrees=True).as_matrix()
        transforms[:, :3, :3] = transforms[:, :3, :3] @ (turn * um / um[:, None])
    transforms[:, :3, 3] = centre + shift - np.einsum("kij,j->ki", transforms[:, :3, :3], centre)
    bending = None if bend == 0 else _bend(rng_for(seed, 3), transforms, centre, semi[0],
                                           bend * size[:2].mean(), 2 * bend)
    return Frames(shape=shape, count=count, nuclei=points, sigma=sigma, brightness=brightness,
                  activity=activity, transforms=transforms, seed=int(seed), bend=bending)


def _bend(rng: np.random.Generator, transforms: np.ndarray, centre: np.ndarray,
          half_length: float, across: float, strain: float) -> Bend:
    """Smooth per-frame bends of a head ``2 * half_length`` voxels long.

    The head is centred on ``centre`` in the reference and carried along by
    ``transforms``; it bends by up to ``across`` voxels across its axis and
    is compressed by a strain of up to ``strain`` along it, each mode swinging
    with periods of 6 to 24 frames however long the recording.
    """
    count = len(transforms)
    modes = np.stack([_motion(rng, count, a, BEND_PERIOD)
                      for a in (0.6 * across, 0.4 * across, strain)], axis=1)
    return Bend(centre=(transforms[:, :3, :3] @ centre + transforms[:, :3, 3])[:, :2],
                angle=np.arctan2(transforms[:, 1, 0], transforms[:, 0, 0]),
                half_length=float(half_length), modes=modes)


def write_frames(
    path: str | Path, movie: Frames, *, overwrite: bool = False, progress: bool = True
) -> Path:
    """Write ``movie`` to the HDF5 file ``path``, one frame at a time (layout: module docstring)."""
    import h5py

    from volumetric.engine import Progress

    path = require_suffix(path, HDF5_SUFFIXES, "HDF5")
    c, x, y, z = movie.shape
    chunks = (1, min(x, 128), min(y, 128), z)
    with replacing([path], overwrite=overwrite) as (tmp,), h5py.File(tmp, "w") as f:
        f.attrs["generator"] = "volumetric.testing.frames"
        f.attrs["seed"] = movie.seed
        ds = f.create_dataset("transforms", data=movie.transforms)
        ds.attrs["convention"] = CONVENTION
        f.create_dataset("nuclei", data=movie.nuclei).attrs["axes"] = "xyz"
        landmarks = np.stack([movie.positions(k) for k in range(movie.count)])
        f.create_dataset("landmarks", data=landmarks).attrs["axes"] = "xyz"
        group = f.create_group("frames")
        bar = Progress(movie.count, f"synth frames {path.name}", enabled=progress)
        for k in range(movie.count):
            ds = group.create_dataset(f"frame_{k}", data=movie.frame(k), chunks=chunks,
                                      compression="gzip", compression_opts=1, shuffle=True)
            ds.attrs["axes"] = "cxyz"
            ds.attrs["element_size_um"] = VOXEL_SIZE_XYZ
            bar.update()
        bar.close()
    return path
