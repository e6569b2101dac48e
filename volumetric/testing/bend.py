"""A smooth non-rigid bending of a worm head in the ``x, y`` plane, exact on points.

The deformation of frame ``k`` is a displacement field on that frame's voxel
coordinates, laid along the head as it lies in the frame: ``a`` is the
distance along the head's long axis from its centre, ``b`` the distance
across it, ``s = a / half_length`` (-1 to 1 over the head). Three
low-frequency modes move a point at ``(a, b)``::

    across the axis:  b += arch[k] * cos(pi s) + wave[k] * sin(pi s)
    along the axis:   a += strain[k] * half_length / pi * sin(pi s)

an arch (the middle of the head bent one way, both ends the other) and an
S-shaped bend, and a gentle local compression (the local strain along the
axis is ``strain[k] * cos(pi s)``: the middle squeezed while the ends
stretch, or the reverse). ``z`` is not moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Bend:
    """Per-frame bends of a head; build with :func:`volumetric.testing.frames.frames`.

    Attributes
    ----------
    centre : ndarray, shape (count, 2)
        The head's centre (``x, y`` voxels) in each frame.
    angle : ndarray, shape (count,)
        Direction of the head's long axis in each frame (radians from ``+x``
        towards ``+y``).
    half_length : float
        Half the length of the head along its axis (voxels).
    modes : ndarray, shape (count, 3)
        Per frame: the arch and S-bend amplitudes across the axis (voxels)
        and the compression strain along it (a fraction).
    """

    centre: np.ndarray
    angle: np.ndarray
    half_length: float
    modes: np.ndarray

    def displacement(self, points: np.ndarray, index: int) -> np.ndarray:
        """The ``x, y`` displacement (voxels, shape ``(n, 2)``) of ``points`` in frame ``index``.

        Parameters
        ----------
        points : ndarray, shape (n, 2) or (n, 3)
            Positions (``x, y`` first) before the bend.
        index : int
            The frame.
        """
        along = np.array([np.cos(self.angle[index]), np.sin(self.angle[index])])
        across = np.array([-along[1], along[0]])
        s = (np.asarray(points, dtype=float)[:, :2] - self.centre[index]) @ along
        s /= self.half_length
        arch, wave, strain = self.modes[index]
        da = strain * self.half_length / np.pi * np.sin(np.pi * s)
        db = arch * np.cos(np.pi * s) + wave * np.sin(np.pi * s)
        return da[:, None] * along + db[:, None] * across

    def apply(self, points: np.ndarray, index: int) -> np.ndarray:
        """``points`` (``x, y, z``, shape ``(n, 3)``) bent as in frame ``index``.

        Examples
        --------
        >>> bend = Bend(np.zeros((1, 2)), np.zeros(1), 10.0, np.array([[2.0, 0.0, 0.0]]))
        >>> bend.apply(np.array([[0.0, 0.0, 1.0], [5.0, 0.0, 1.0]]), 0).round(6)
        array([[0., 2., 1.],
               [5., 0., 1.]])
        """
        out = np.array(points, dtype=float)
        out[:, :2] += self.displacement(out, index)
        return out
