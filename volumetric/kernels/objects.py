"""Object-level scores: truth objects matched to predicted objects by IoU.

Everything works on per-object tables (sizes and the voxels each pair of
objects shares), never on images, so it serves a whole volume as well as
one array. A truth and a predicted object match when their IoU is at least
the threshold; matches are one to one, taken greedily by decreasing IoU (for
a threshold above 0.5 no object can have two candidates anyway).

A *split* is a truth object that holds at least half of each of two or more
predicted objects; a *merge* is a predicted object that holds at least half
of each of two or more truth objects. Ratios with nothing to count are 1.0,
as for voxel scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SHARE = 0.5


def _ratio(num: float, den: float) -> float:
    return num / den if den else 1.0


def match_objects(truth_size: np.ndarray, pred_size: np.ndarray, pairs: np.ndarray, *,
                  iou: float = 0.5, min_size: int = 0) -> dict[str, Any]:
    """Match truth objects to predicted objects and count what was found.

    Parameters
    ----------
    truth_size, pred_size : ndarray
        Voxels of each object, indexed by object id (index 0, the background, is ignored).
    pairs : ndarray
        ``(k, 3)`` rows of truth id, predicted id and the voxels they share
        (each pair once).
    iou : float
        Least IoU of a match, in (0, 1].
    min_size : int
        Objects (truth or predicted) smaller than this many voxels are dropped first.

    Returns
    -------
    dict
        ``scores``: ``truth``, ``predicted``, ``matched``, ``precision``,
        ``recall``, ``f1``, ``splits``, ``merges``, ``mean_matched_iou``
        (None without a match); ``kept``: the truth ids kept; ``best_iou`` and
        ``matched``: per kept truth object, its best IoU and whether it matched.

    Examples
    --------
    >>> r = match_objects(np.array([0, 10, 4]), np.array([0, 8]), np.array([[1, 1, 8]]))
    >>> r["scores"]["matched"], r["scores"]["recall"]
    (1, 0.5)
    """
    truth_size, pred_size = np.asarray(truth_size), np.asarray(pred_size)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 3)
    keep_t = truth_size >= max(min_size, 1)
    keep_p = pred_size >= max(min_size, 1)
    keep_t[0] = keep_p[0] = False
    pairs = pairs[keep_t[pairs[:, 0]] & keep_p[pairs[:, 1]]]
    t, p, shared = pairs[:, 0], pairs[:, 1], pairs[:, 2].astype(np.float64)
    ious = shared / (truth_size[t] + pred_size[p] - shared)

    matched_t = np.zeros(truth_size.size, bool)
    matched_p = np.zeros(pred_size.size, bool)
    matched_ious = []
    for k in np.argsort(-ious, kind="stable"):
        if ious[k] < iou:
            break
        if not matched_t[t[k]] and not matched_p[p[k]]:
            matched_t[t[k]] = matched_p[p[k]] = True
            matched_ious.append(ious[k])

    best = np.zeros(truth_size.size)
    np.maximum.at(best, t, ious)
    held_p = shared >= SHARE * pred_size[p]
    held_t = shared >= SHARE * truth_size[t]
    splits = int(np.count_nonzero(np.bincount(t[held_p], minlength=truth_size.size) > 1))
    merges = int(np.count_nonzero(np.bincount(p[held_t], minlength=pred_size.size) > 1))

    n_truth, n_pred, n_matched = int(keep_t.sum()), int(keep_p.sum()), len(matched_ious)
    kept = np.flatnonzero(keep_t)
    scores = {
        "truth": n_truth, "predicted": n_pred, "matched": n_matched,
        "precision": _ratio(n_matched, n_pred), "recall": _ratio(n_matched, n_truth),
        "f1": _ratio(2 * n_matched, n_truth + n_pred), "splits": splits, "merges": merges,
        "mean_matched_iou": float(np.mean(matched_ious)) if matched_ious else None,
    }
    return {"scores": scores, "kept": kept, "best_iou": best[kept], "matched": matched_t[kept]}
