"""``make demo``'s picture and guide: summary.png has its four panels, every output is named."""

from __future__ import annotations

import csv

import imageio.v3 as iio
import numpy as np

from volumetric import RunOptions, convert
from volumetric.demo import OUTPUTS, SUMMARY, viewing_guide, write_summary


def _demo_folder(tmp_path, client):
    """The outputs write_summary reads, small: raw.zarr, prediction.zarr, run/metrics.csv."""
    rng = np.random.default_rng(0)
    raw = rng.integers(100, 400, (8, 48, 64), dtype=np.uint16)
    raw[:, 20:28, :] += 2000  # a bright band: the structure
    distance = np.ones((1, 8, 48, 64), np.float32)
    distance[:, :, 20:28, :] = 0.0
    np.save(tmp_path / "raw.npy", raw)
    np.save(tmp_path / "distance.npy", distance)
    run = RunOptions(client=client, progress=False)
    convert(str(tmp_path / "raw.npy"), str(tmp_path / "raw.zarr"), run=run)
    convert(str(tmp_path / "distance.npy"), str(tmp_path / "prediction.zarr"), run=run)
    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["epoch", "train_loss", "val_loss", "val_mse"])
        writer.writeheader()
        writer.writerows({"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_mse": 1.2 / e}
                         for e in (1, 2, 3))
    return tmp_path


def test_summary_png_has_four_panels_side_by_side(tmp_path, client):
    out = _demo_folder(tmp_path, client)
    path = write_summary(out)
    assert path == out / SUMMARY
    image = iio.imread(path)[..., :3].astype(float)
    height, width = image.shape[:2]
    assert width >= 3.5 * height and height >= 300
    panels = np.array_split(image, 4, axis=1)
    assert all(panel.std() > 5 for panel in panels)  # each panel draws something
    # the overlay (third panel) colours the band green: more green than red there
    overlay = panels[2]
    assert (overlay[..., 1] - overlay[..., 0]).max() > 100


def test_viewing_guide_names_every_output_and_the_viewers(tmp_path, client):
    out = _demo_folder(tmp_path, client)
    write_summary(out)
    guide = viewing_guide(out)
    for name in ("raw.zarr", "prediction.zarr", "run", SUMMARY):
        assert str(out / name) in guide
    assert "mask.zarr" not in guide  # only outputs that exist
    napari = next(line for line in guide.splitlines() if line.strip().startswith("napari "))
    assert napari.split()[1:] == [str(out / "raw.zarr"), str(out / "prediction.zarr")]
    assert "napari-ome-zarr" in guide and "zarr://http://localhost:8000/raw.zarr" in guide
    assert {name for name, _, _ in OUTPUTS} >= {"raw.zarr", "prediction.zarr", SUMMARY}
