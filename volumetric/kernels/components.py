"""Connected components labelled block by block and merged across block borders.

Each block is labelled on its own (:func:`label_block`, or
:func:`instance_block` for a label image whose ids are the objects); a block
hands back its labels' sizes, centroid sums and overlaps
(:func:`block_tables`) and the labels on its faces (:func:`faces`). The
client then unions the labels that touch across block faces
(:func:`merge_labels`), so that the objects equal those of
``scipy.ndimage.label`` on the whole array, up to a relabelling.

Connectivity is given as in 3D: 6 (faces), 18 (faces and edges), 26 (faces,
edges and corners). On a 2D image 6 means 4-connected and 18 or 26 mean
8-connected; on a volume with one plane the 3D structure gives the same.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

CONNECTIVITY = {6: 1, 18: 2, 26: 3}


def structure(ndim: int, connectivity: int) -> np.ndarray:
    """The ``scipy.ndimage`` structuring element of ``connectivity`` (6, 18 or 26) in ``ndim`` D."""
    return ndimage.generate_binary_structure(ndim, min(CONNECTIVITY[connectivity], ndim))


def label_block(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Connected components of one block: labels ``1..n`` (0 background) and ``n``."""
    labels, n = ndimage.label(mask, structure(mask.ndim, connectivity))
    return labels, int(n)


def instance_block(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local labels ``1..n`` of an instance-label block and the id of each (0 background).

    Returns
    -------
    labels : ndarray
        ``ids`` renumbered ``1..n`` in increasing id order.
    keys : ndarray
        ``keys[k - 1]`` is the id of local label ``k``.
    """
    keys = np.unique(ids)
    keys = keys[keys != 0]
    return np.where(ids != 0, np.searchsorted(keys, ids) + 1, 0), keys


def faces(labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first and last plane of ``labels`` along each axis."""
    return [(np.take(labels, 0, axis=a).copy(), np.take(labels, -1, axis=a).copy())
            for a in range(labels.ndim)]


def block_tables(truth: np.ndarray, n_truth: int, pred: np.ndarray, n_pred: int,
                 origin: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-label tables of one block: sizes, truth centroid sums, overlapping pairs.

    Parameters
    ----------
    truth, pred : ndarray
        Local labels (0 background) of one block.
    n_truth, n_pred : int
        Their label counts.
    origin : sequence of int
        The block's first voxel in the volume (centroid sums are in volume coordinates).

    Returns
    -------
    dict
        ``truth_size`` (``n_truth + 1``), ``truth_sums`` (``(n_truth + 1, ndim)``),
        ``pred_size`` (``n_pred + 1``) and ``pairs`` (``(k, 3)`` rows of truth
        label, predicted label, voxels in both).
    """
    where = np.nonzero(truth)
    t = truth[where]
    sums = np.stack([np.bincount(t, weights=w + o, minlength=n_truth + 1)
                     for w, o in zip(where, origin)], axis=1)
    both = (truth != 0) & (pred != 0)
    code = truth[both].astype(np.int64) * (n_pred + 1) + pred[both]
    codes, counts = np.unique(code, return_counts=True)
    pairs = np.stack([codes // (n_pred + 1), codes % (n_pred + 1), counts], axis=1)
    return {"truth_size": np.bincount(t, minlength=n_truth + 1),
            "truth_sums": sums,
            "pred_size": np.bincount(pred.ravel(), minlength=n_pred + 1),
            "pairs": pairs.reshape(-1, 3)}


def _plane_edges(lo: np.ndarray, hi: np.ndarray, rank: int) -> np.ndarray:
    """Pairs of nonzero ids facing each other across a plane, shifted within ``rank``."""
    found = []
    for shift in itertools.product((-1, 0, 1), repeat=lo.ndim):
        if np.count_nonzero(shift) > rank - 1:
            continue
        a = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(shift, lo.shape))
        b = tuple(slice(max(0, s), n - max(0, -s)) for s, n in zip(shift, lo.shape))
        x, y = lo[a], hi[b]
        touch = (x != 0) & (y != 0)
        found.append(np.stack([x[touch], y[touch]], axis=1))
    return np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 2), np.int64)


def merge_labels(
    starts: Sequence[Sequence[int]],
    stops: Sequence[Sequence[int]],
    counts: Sequence[int],
    block_faces: Sequence[list[tuple[np.ndarray, np.ndarray]]] | None,
    shape: Sequence[int],
    connectivity: int,
    keys: Sequence[np.ndarray] | None = None,
) -> tuple[list[np.ndarray], int, np.ndarray | None]:
    """Object ids of every block's local labels, merged across block borders.

    Parameters
    ----------
    starts, stops : sequences of int tuples
        Each block's box in the volume.
    counts : sequence of int
        Each block's number of local labels.
    block_faces : sequence, optional
        Each block's :func:`faces` (connected components).
    shape : sequence of int
        The volume's shape.
    connectivity : int
        6, 18 or 26 (see :func:`structure`).
    keys : sequence of ndarray, optional
        Each block's :func:`instance_block` ids instead of faces: labels
        with one id are one object.

    Returns
    -------
    lookups : list of ndarray
        Per block, ``lookup[k]`` is the object id (``1..n``) of local label
        ``k`` (``lookup[0] == 0``).
    n : int
        The number of objects.
    ids : ndarray or None
        With ``keys``, the id of each object.
    """
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(offsets[-1])
    ids = None
    if keys is not None:
        ids, objects = np.unique(np.concatenate([np.asarray(k) for k in keys] or [[]]),
                                 return_inverse=True)
        n = ids.size
    else:
        edges = _border_edges(starts, stops, offsets, block_faces, shape, connectivity)
        graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(total, total))
        n, objects = connected_components(graph, directed=False)
    lookups = [np.concatenate([[0], objects[offsets[i]:offsets[i + 1]] + 1]).astype(np.int64)
               for i in range(len(counts))]
    return lookups, int(n), ids


def _border_edges(starts: Any, stops: Any, offsets: np.ndarray, block_faces: Any,
                  shape: Sequence[int], connectivity: int) -> np.ndarray:
    ndim, rank = len(shape), min(CONNECTIVITY[connectivity], len(shape))
    edges = [np.zeros((0, 2), np.int64)]
    for axis in range(ndim):
        plane_shape = tuple(s for i, s in enumerate(shape) if i != axis)
        borders: dict[int, list[list[int]]] = {}
        for i, (start, stop) in enumerate(zip(starts, stops)):
            borders.setdefault(start[axis], [[], []])[1].append(i)
            borders.setdefault(stop[axis], [[], []])[0].append(i)
        for below, above in borders.values():
            if not below or not above:
                continue
            planes = []
            for side, blocks in ((1, below), (0, above)):
                plane = np.zeros(plane_shape, np.int64)
                for i in blocks:
                    face = block_faces[i][axis][side].astype(np.int64)
                    where = tuple(slice(a, b) for j, (a, b) in enumerate(zip(starts[i], stops[i]))
                                  if j != axis)
                    plane[where] = np.where(face > 0, face + offsets[i], 0)
                planes.append(plane)
            edges.append(_plane_edges(planes[0], planes[1], rank) - 1)
    return np.concatenate(edges)
