"""``vol label``: a mask written into its image as an NGFF label image, the image untouched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr_models import open_ome_zarr

from volumetric.engine import RunOptions
from volumetric.ops.convert import convert


def _files(path: Path) -> dict[str, str]:
    """Digest of every file of the image outside its labels group."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*"))
            if p.is_file() and p.relative_to(path).parts[0] != "labels"}


@pytest.fixture
def images(client, tmp_path):
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 4000, size=(2, 12, 40, 36), dtype=np.uint16)
    np.save(tmp_path / "raw.npy", raw)
    mask = rng.random((12, 40, 36)) > 0.7
    np.save(tmp_path / "cells.npy", mask)
    return tmp_path, mask


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_a_mask_becomes_a_label_of_its_image(vol, client, images, ngff):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    folder, mask = images
    raw = folder / "raw.zarr"
    convert(str(folder / "raw.npy"), str(raw), axes="czyx", ngff=ngff, levels=3,
            chunks=(1, 4, 16, 16), voxel_size=(2.0, 0.5, 0.5), unit="um",
            run=RunOptions(client=client, progress=False))
    before = _files(raw)
    result = vol("label", folder / "cells.npy", raw, "--block-mb", "0.001")
    assert result.exit_code == 0, result.output
    assert _files(raw) == before
    image = open_ome_zarr(str(raw))
    assert image.labels.ome_attributes.labels == ["cells"]
    label = open_ome_zarr(str(raw / "labels" / "cells"))
    assert type(label).__name__ == "ImageLabel" and label.ome_zarr_version == ngff
    assert label.ome_attributes.image_label.source.image == "../../"
    datasets = image.ome_attributes.multiscales[0].datasets
    for level, dataset in enumerate(datasets):
        factors = [round(s / s0) for s, s0 in zip(dataset.coordinateTransformations[0].scale,
                                                  datasets[0].coordinateTransformations[0].scale)]
        stored = zarr.open_array(str(raw / "labels" / "cells" / dataset.path), mode="r")
        assert stored.dtype == np.uint8 and stored.shape[:1] == (1,)
        expected = mask[::factors[1], ::factors[2], ::factors[3]]
        np.testing.assert_array_equal(stored[0], expected, err_msg=f"level {level}")
    nodes = list(Reader(parse_url(str(raw / "labels" / "cells")))())
    found = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    np.testing.assert_array_equal(np.asarray(found[0].data[0])[0], mask)
    assert not (raw / "labels" / "cells" / ".volumetric").exists()


def test_an_existing_label_needs_overwrite_and_stays_listed_once(vol, client, images):
    folder, _ = images
    raw = folder / "raw.zarr"
    convert(str(folder / "raw.npy"), str(raw), axes="czyx",
            run=RunOptions(client=client, progress=False))
    assert vol("label", folder / "cells.npy", raw, "--name", "a").exit_code == 0
    again = vol("label", folder / "cells.npy", raw, "--name", "a")
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert vol("label", folder / "cells.npy", raw, "--name", "a", "--overwrite").exit_code == 0
    assert vol("label", folder / "cells.npy", raw, "--name", "b").exit_code == 0
    assert open_ome_zarr(str(raw)).labels.ome_attributes.labels == ["a", "b"]


@pytest.mark.parametrize("mask, name, message", [
    (np.zeros((12, 40, 35), np.uint8), "m", "does not cover"),
    (np.zeros((12, 40, 36), np.float32), "m", "labels are integers"),
    (np.zeros((12, 40, 36), np.uint8), "../up", "label name"),
])
def test_a_mask_that_cannot_label_the_image_is_refused(vol, client, images, mask, name, message):
    folder, _ = images
    raw = folder / "raw.zarr"
    convert(str(folder / "raw.npy"), str(raw), axes="czyx",
            run=RunOptions(client=client, progress=False))
    np.save(folder / "m.npy", mask)
    result = vol("label", folder / "m.npy", raw, "--name", name)
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (raw / "labels").exists()
