"""Pictures of a pipeline's outputs for a person: projections, overlays, training curves.

Used by ``make demo`` (its ``summary.png``) and the notebooks. The images
are read whole from one pyramid level, the finest that holds at most
``max_voxels``: fine for the demo's sizes, and a coarse view of a large
volume. Drawing needs matplotlib (the ``ml`` extra); reading and projecting
need only numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from volumetric.extras import require
from volumetric.io.ome import open_image

GREEN = (0.15, 1.0, 0.3)


def read_volume(path: str | Path, *, channel: int = 0, t: int = 0,
                max_voxels: int = 2**25) -> np.ndarray:
    """The ``z, y, x`` volume of one channel and time point of an OME-Zarr image.

    Parameters
    ----------
    path : str or Path
        An OME-Zarr image (any ``vol`` output).
    channel, t : int
        Which channel and time point, where the image has those axes.
    max_voxels : int
        Read the finest pyramid level with at most this many voxels (the
        coarsest one when none is that small).

    Returns
    -------
    ndarray
        3D (a 2D image gets a ``z`` axis of length 1).
    """
    image = open_image(path)
    sizes = [int(np.prod(level.shape)) for level in image.levels]
    level = next((i for i, size in enumerate(sizes) if size <= max_voxels), len(sizes) - 1)
    index = tuple(t if a == "t" else channel if a == "c" else slice(None)
                  for a in image.meta.axes)
    data = np.asarray(image.array(level)[index])
    return data.reshape((1,) * (3 - data.ndim) + data.shape)


def project(volume: np.ndarray, mode: str = "max") -> np.ndarray:
    """The projection of a ``z, y, x`` volume along ``z`` (``max``, ``min`` or ``mean``)."""
    return {"max": np.max, "min": np.min, "mean": np.mean}[mode](volume, axis=0)


def stretch(image: np.ndarray, percentiles: Sequence[float] = (1.0, 99.8)) -> np.ndarray:
    """``image`` as float32 in [0, 1], with the given percentiles at 0 and 1.

    Examples
    --------
    >>> stretch(np.array([0, 5, 10]), (0, 100)).tolist()
    [0.0, 0.5, 1.0]
    """
    low, high = np.percentile(image, percentiles)
    scaled = (np.asarray(image, dtype=np.float32) - low) / max(float(high - low), 1e-12)
    return np.clip(scaled, 0.0, 1.0)


def overlay_rgb(raw: np.ndarray, structure: np.ndarray, colour: Sequence[float] = GREEN,
                opacity: float = 1.0) -> np.ndarray:
    """Grey ``raw`` with ``structure`` (0..1, e.g. a probability) laid over it in ``colour``.

    Where ``structure`` is 1 the colour covers ``opacity`` of the grey.

    Returns
    -------
    ndarray
        ``(H, W, 3)`` float32 in [0, 1].

    Examples
    --------
    >>> rgb = overlay_rgb(np.zeros((2, 2)), np.array([[0, 1], [0, 0]]))
    >>> rgb.shape, rgb[0, 1].round(2).tolist()
    ((2, 2, 3), [0.15, 1.0, 0.3])
    """
    grey = stretch(raw)[..., None] * np.ones(3, dtype=np.float32)
    alpha = opacity * np.clip(np.asarray(structure, dtype=np.float32), 0.0, 1.0)[..., None]
    return (1 - alpha) * grey + alpha * np.asarray(colour, dtype=np.float32)


def draw_curves(ax: Any, history: Sequence[dict[str, float]]) -> None:
    """Training and validation loss per epoch (``vol train``'s ``metrics.csv`` rows) on ``ax``."""
    epochs = [row["epoch"] for row in history]
    for key in ("train_loss", "val_loss"):
        if history and key in history[0]:
            ax.plot(epochs, [row[key] for row in history], marker="o", label=key.replace("_", " "))
    ax.set(xlabel="epoch", ylabel="loss", title="training curves")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.legend()


def _integer_ticks() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def summary_figure(raw: np.ndarray, structure: np.ndarray,
                   history: Sequence[dict[str, float]], *,
                   structure_title: str = "prediction", overlay: np.ndarray | None = None) -> Any:
    """Four panels: raw projection, predicted structure, their overlay, the training curves.

    Parameters
    ----------
    raw : ndarray
        2D projection of the raw image.
    structure : ndarray
        2D projection of what the network predicts, 0..1 (bright: structure).
    history : sequence of dict
        One row per epoch with ``epoch``, ``train_loss`` and ``val_loss``.
    structure_title : str
        The second panel's title.
    overlay : ndarray, optional
        What the third panel lays over ``raw`` (default: ``structure``), e.g.
        a sharpened copy of a smooth prediction.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require("matplotlib", extra="ml")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 4.4), layout="constrained")
    axes = fig.subplots(1, 4)
    axes[0].imshow(stretch(raw), cmap="gray")
    axes[0].set_title("raw, maximum along z")
    axes[1].imshow(np.clip(structure, 0, 1), cmap="magma", vmin=0, vmax=1)
    axes[1].set_title(structure_title)
    axes[2].imshow(overlay_rgb(raw, structure if overlay is None else overlay, opacity=0.7))
    axes[2].set_title("overlay")
    for ax in axes[:3]:
        ax.set_axis_off()
    draw_curves(axes[3], history)
    return fig


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` (through a temporary file); the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    tmp.replace(path)
    return path
