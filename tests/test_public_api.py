"""The Python API equals the CLI: each public function, with its defaults, gives the CLI's result."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import zarr
from image_files import write_image
from predict_models import save_torchscript, tiny

import volumetric
from volumetric.io.swc import Skeleton, write_swc

SHAPE = (12, 40, 36)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small raw image with blobs, its mask, a prediction, an SWC and a model."""
    d = tmp_path_factory.mktemp("api")
    rng = np.random.default_rng(11)
    mask = np.zeros(SHAPE, np.uint8)
    mask[2:9, 5:20, 6:15] = 1
    mask[4:10, 25:33, 20:30] = 1
    raw = (mask.astype(np.uint16) * 900 + rng.integers(0, 200, SHAPE)).astype(np.uint16)
    np.save(d / "raw.npy", raw)
    write_image(d / "raw.zarr", raw, chunks=(6, 16, 16), voxel_size=(2.0, 1.0, 1.0))
    write_image(d / "mask.zarr", mask, chunks=(6, 16, 16), voxel_size=(2.0, 1.0, 1.0))
    write_image(d / "pred.zarr", (mask * 0.8 + 0.1)[None].astype(np.float32), axes="czyx",
                chunks=(1, 6, 16, 16), voxel_size=(2.0, 1.0, 1.0))
    write_swc(d / "n.swc", Skeleton(
        ids=np.array([1, 2, 3]), types=np.full(3, 3), parents=np.array([-1, 1, 2]),
        xyz=np.array([[6.0, 8, 4], [12, 15, 10], [25, 30, 16]]), radius=np.array([2.0, 1, 1])))
    save_torchscript(tiny(out_channels=1), d / "tiny.ts")
    return d


def _array(path) -> np.ndarray:
    return zarr.open_array(str(path / "0"), mode="r")[:]


def _attrs(path) -> dict:
    attrs = json.loads((path / "zarr.json").read_text())["attributes"]
    attrs["ome"]["multiscales"][0].pop("name", None)  # the store's own name
    attrs["volumetric"]["meta"].pop("name", None)
    return attrs


def _same_image(a, b) -> None:
    np.testing.assert_array_equal(_array(a), _array(b))
    assert _attrs(a) == _attrs(b)


IMAGE_OPS = {
    "convert": (lambda d: [d / "raw.npy"], {}),
    "distance": (lambda d: [d / "mask.zarr"], {}),
    "render": (lambda d: [d / "n.swc"], {"like": "raw.zarr"}),  # vol render SWC OUT --like RAW
    "project": (lambda d: [d / "raw.zarr"], {}),
    "overlay": (lambda d: [d / "raw.zarr", d / "pred.zarr"], {}),
}


@pytest.mark.parametrize("name", list(IMAGE_OPS))
def test_image_operations_equal_the_cli(vol, client, data, tmp_path, name):
    args, options = IMAGE_OPS[name]
    options = {k: str(data / v) for k, v in options.items()}
    by_cli, by_python = tmp_path / "cli.zarr", tmp_path / "py.zarr"
    flags = [x for k, v in options.items() for x in (f"--{k}", v)]
    result = vol(name, *args(data), by_cli, *flags)
    assert result.exit_code == 0, result.output
    run = volumetric.RunOptions(client=client, progress=False)
    if name == "render":  # render(swc, like, dst)
        volumetric.render(str(data / "n.swc"), options["like"], str(by_python), run=run)
    else:
        getattr(volumetric, name)(*map(str, args(data)), str(by_python), **options, run=run)
    _same_image(by_cli, by_python)


def test_predict_equals_the_cli(vol, client, data, tmp_path):
    model = str(data / "tiny.ts")
    assert vol("predict", data / "raw.zarr", tmp_path / "cli.zarr", "--model", model).exit_code == 0
    volumetric.predict(str(data / "raw.zarr"), str(tmp_path / "py.zarr"),
                       volumetric.PredictOptions(model),
                       run=volumetric.RunOptions(client=client, progress=False))
    _same_image(tmp_path / "cli.zarr", tmp_path / "py.zarr")


def test_discover_evaluate_info_and_patches_equal_the_cli(vol, client, data, tmp_path):
    run = volumetric.RunOptions(client=client, progress=False)
    mask = str(data / "mask.zarr")
    assert vol("discover", mask, tmp_path / "cli.json", "--all").exit_code == 0
    cubes = volumetric.discover(mask, str(tmp_path / "py.json"), scan_all=True, run=run)
    from_cli = json.loads((tmp_path / "cli.json").read_text())
    assert from_cli["cubes"] == [list(c) for c in cubes.cubes] and cubes.cubes

    result = vol("evaluate", data / "pred.zarr", mask, "--threshold", "0.5", "--json")
    scores = volumetric.evaluate(str(data / "pred.zarr"), mask, threshold=0.5, run=run)
    assert json.loads(result.stdout) == json.loads(json.dumps(scores))
    assert scores["objects"]["truth"] == 2
    result = vol("evaluate", data / "pred.zarr", mask, "--data-range", "2", "--json")
    scores = volumetric.evaluate(str(data / "pred.zarr"), mask, data_range=2.0, run=run)
    assert json.loads(result.stdout) == pytest.approx(scores)

    assert json.loads(vol("info", mask, "--json").stdout) == volumetric.info(mask)

    raw = str(data / "raw.zarr")
    assert vol("patches", raw, mask, tmp_path / "cli.png", "--patch", "4,16,16").exit_code == 0
    volumetric.patches(raw, mask, tmp_path / "py.png", patch=(4, 16, 16))
    np.testing.assert_array_equal(iio.imread(tmp_path / "cli.png"), iio.imread(tmp_path / "py.png"))


def test_one_cluster_serves_every_call_in_its_block(data, tmp_path, monkeypatch):
    import volumetric.engine.cluster as cluster_module

    started = []
    real = cluster_module.local_cluster

    def counted(*args, **kwargs):
        started.append(args)
        return real(*args, **kwargs)

    monkeypatch.delenv("VOLUMETRIC_CLUSTER", raising=False)
    monkeypatch.setattr(cluster_module, "local_cluster", counted)
    quiet = volumetric.RunOptions(progress=False)
    with volumetric.cluster(workers=1, quiet=True) as client:
        volumetric.distance(str(data / "mask.zarr"), str(tmp_path / "d.zarr"), clip=3.0, run=quiet)
        volumetric.project(str(data / "raw.zarr"), str(tmp_path / "p.zarr"), run=quiet)
        assert len(client.scheduler_info()["workers"]) == 1
    assert len(started) == 1
    assert _array(tmp_path / "d.zarr").max() == 3.0



def test_volumetric_train_stays_the_function_after_the_training_package_is_imported(monkeypatch):
    import volumetric.ops.train as ops_train
    import volumetric.train.loop  # noqa: F401  (makes the package an attribute of volumetric)

    calls = []
    monkeypatch.setattr(ops_train, "train", lambda *args, **kwargs: calls.append((args, kwargs)))
    volumetric.train("data", "out", resume=True)
    assert calls == [(("data", "out"), {"resume": True})]
    assert volumetric.train.TrainSettings is volumetric.TrainSettings
