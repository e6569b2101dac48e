"""Commands on real dask processes of their own, on 127.0.0.1: a scheduler and two workers
started here, ``local:2``, and the standing cluster of ``vol cluster up|info|down``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from contextlib import suppress

import numpy as np
import pytest
from dask_processes import (
    DASK,
    dask_processes,
    run_vol,
    same_image,
    vol_env,
    wait_for_scheduler_file,
    worker_zarr_config,
)
from distributed import Client

from volumetric.engine.scheduler import CLUSTER_ENV
from volumetric.engine.standing import STATE_ENV

CONVERT = ("--chunks", "8,16,16", "--block-mb", "0.01")


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A ``dask scheduler`` and two ``dask worker`` processes; yields the scheduler file."""
    with dask_processes(tmp_path_factory.mktemp("dask")) as started:
        yield started.scheduler_file


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A raw volume and a mask, and what ``vol convert`` and ``vol distance`` make of them on
    an embedded cluster of two workers (``--cluster local:2``)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    np.save(folder / "raw.npy", rng.integers(0, 255, (20, 40, 36), dtype=np.uint8))
    np.save(folder / "mask.npy", (rng.random((64, 96, 96)) > 0.97).astype(np.uint8))
    for command in (["convert", folder / "raw.npy", folder / "raw.zarr", *CONVERT],
                    ["distance", folder / "mask.npy", folder / "dist.zarr", "--clip", "4",
                     "--block-mb", "0.5"]):
        result = run_vol(*command, "--cluster", "local:2")
        assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.parametrize("how", ["address", "scheduler file"])
def test_commands_on_a_scheduler_of_their_own_equal_the_embedded_cluster(scheduler, images,
                                                                         tmp_path, how):
    cluster = (json.loads(scheduler.read_text())["address"] if how == "address"
               else str(scheduler))
    converted = run_vol("convert", images / "raw.npy", tmp_path / "raw.zarr", *CONVERT,
                     "--cluster", cluster)
    assert converted.returncode == 0, converted.stderr
    assert ", 1 level(s), 9 blocks," in converted.stdout
    distances = run_vol("distance", images / "mask.npy", tmp_path / "dist.zarr", "--clip", "4",
                     "--block-mb", "0.5", "--cluster", cluster)
    assert distances.returncode == 0, distances.stderr
    assert "blocks (" in distances.stdout and " 1 blocks" not in distances.stdout
    same_image(tmp_path / "raw.zarr", images / "raw.zarr")
    same_image(tmp_path / "dist.zarr", images / "dist.zarr")


def test_predict_on_a_scheduler_of_its_own_equals_the_embedded_cluster(scheduler, images,
                                                                     tmp_path):
    from predict_models import save_torchscript, tiny

    model = save_torchscript(tiny(out_channels=1), tmp_path / "tiny.ts")
    options = ("--model", model, "--window", "8,16,16", "--block", "20,40,36")
    address = json.loads(scheduler.read_text())["address"]
    outputs = {}
    for cluster in (address, "local:2"):
        out = tmp_path / f"pred-{cluster.replace(':', '-').replace('/', '')}.zarr"
        result = run_vol("predict", images / "raw.zarr", out, *options, "--cluster", cluster)
        assert result.returncode == 0, result.stderr
        outputs[cluster] = out
    same_image(outputs[address], outputs["local:2"])


def test_the_environment_names_the_scheduler_too(scheduler, images, tmp_path):
    env = vol_env(**{CLUSTER_ENV: str(scheduler)})
    result = run_vol("distance", images / "mask.npy", tmp_path / "dist.zarr", "--clip", "4",
                  "--block-mb", "0.5", env=env)
    assert result.returncode == 0, result.stderr
    same_image(tmp_path / "dist.zarr", images / "dist.zarr")


@pytest.fixture
def state(tmp_path, monkeypatch):
    """A state folder of its own; whatever ``vol cluster up`` left running is stopped."""
    folder = tmp_path / "state"
    monkeypatch.setenv(STATE_ENV, str(folder))
    try:
        yield folder
    finally:
        with suppress(OSError, ValueError):
            for process in json.loads((folder / "cluster.json").read_text())["processes"]:
                with suppress(ProcessLookupError):
                    os.killpg(process["pid"], signal.SIGKILL)


def test_cluster_up_info_and_down(state, images, tmp_path):
    import psutil

    env = vol_env(**{STATE_ENV: str(state)})
    up = run_vol("cluster", "up", "--workers", "2", "--dashboard-address", ":0", env=env)
    assert up.returncode == 0, up.stderr
    recorded = json.loads((state / "cluster.json").read_text())
    address = recorded["address"]
    assert address.startswith("tcp://127.0.0.1:")
    assert up.stdout.splitlines() == [
        f"dask scheduler at {address}: 2 workers of 1 thread (logs in {state})",
        f"dashboard: {recorded['dashboard']}",
        f"export VOLUMETRIC_CLUSTER={address}",
    ]
    assert recorded["dashboard"].startswith("http://127.0.0.1:")

    again = run_vol("cluster", "up", env=env)
    assert again.returncode == 2
    assert again.stderr == (f"vol: error: a cluster started by `vol cluster up` runs at {address} "
                            f"({state / 'cluster.json'}); stop it with `vol cluster down`\n")

    info = run_vol("cluster", "info", "--json", env=env)
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["address"] == address
    assert [w["name"] for w in described["workers"]] == ["volumetric-0", "volumetric-1"]
    assert described["threads"] == 2 and described["gpus"] == 0
    packages = described["packages"]
    for package in ("volumetric", "dask", "distributed", "zarr", "numpy", "torch"):
        assert packages["here"][package] is not None
        assert {v[package] for v in packages["workers"].values()} == {packages["here"][package]}
    table = run_vol("cluster", "info", address, env=env).stdout
    assert f"scheduler  {address}" in table and "workers    2: 2 threads" in table
    with Client(address, timeout=30) as client:  # one zarr thread per task thread
        assert worker_zarr_config(client) == [1, 1]

    used = run_vol("distance", images / "mask.npy", tmp_path / "dist.zarr", "--clip", "4",
                "--block-mb", "0.5", env={**env, CLUSTER_ENV: address})
    assert used.returncode == 0, used.stderr
    same_image(tmp_path / "dist.zarr", images / "dist.zarr")

    down = run_vol("cluster", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert down.stdout == f"stopped the dask cluster at {address} (2 workers)\n"
    assert not (state / "cluster.json").exists()
    for process in recorded["processes"]:
        assert not psutil.pid_exists(process["pid"]) or \
            psutil.Process(process["pid"]).status() == psutil.STATUS_ZOMBIE
    gone = run_vol("cluster", "down", env=env)
    assert gone.returncode == 2
    assert gone.stderr.startswith("vol: error: no cluster started by `vol cluster up` to stop")


def test_cluster_info_refuses_what_is_no_running_scheduler(state, tmp_path):
    env = vol_env(**{STATE_ENV: str(state)})
    for args, message in (
        ([], "no cluster to describe: give its ADDRESS or scheduler file, or start one"),
        (["local:2"], "local:2 names no running scheduler: `vol cluster info` describes one"),
        ([str(tmp_path / "none.json")], f"scheduler file {tmp_path / 'none.json'}: no such file"),
    ):
        result = run_vol("cluster", "info", *args, env=env)
        assert result.returncode == 2
        assert result.stderr.startswith(f"vol: error: {message}")
        assert result.stderr.count("\n") == 1


@pytest.fixture
def other_zarr_worker(tmp_path):
    """A scheduler and a worker that reports zarr 0.0.1 (a distribution record ahead of the
    real one on its path, as a stale environment would have); yields the scheduler address."""
    record = tmp_path / "stale" / "zarr-0.0.1.dist-info"
    record.mkdir(parents=True)
    (record / "METADATA").write_text("Metadata-Version: 2.1\nName: zarr\nVersion: 0.0.1\n")
    options: dict = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": tmp_path}
    processes: list[subprocess.Popen] = []
    try:
        processes.append(subprocess.Popen(
            [*DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(tmp_path / "scheduler.json")], **options))
        address = wait_for_scheduler_file(tmp_path / "scheduler.json", processes[0])
        processes.append(subprocess.Popen(
            [*DASK, "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
            env={**os.environ, "PYTHONPATH": str(tmp_path / "stale")}, **options))
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
            worker = next(iter(client.scheduler_info(n_workers=-1)["workers"]))
        yield address, worker
    finally:
        for process in reversed(processes):
            process.kill()
            process.wait()


def test_workers_with_other_package_versions_are_refused(other_zarr_worker, images, tmp_path):
    from importlib.metadata import version

    address, worker = other_zarr_worker
    result = run_vol("convert", images / "raw.npy", tmp_path / "raw.zarr", "--cluster", address)
    assert result.returncode == 2
    assert result.stderr == (
        f"vol: error: the workers of the dask scheduler at {address} run other package versions: "
        f"zarr {version('zarr')} here, 0.0.1 on {worker}; install the same versions everywhere\n")
    assert not (tmp_path / "raw.zarr").exists()
    info = run_vol("cluster", "info", address)
    assert info.returncode == 0, info.stderr
    zarr_row = next(line for line in info.stdout.splitlines() if line.startswith("zarr "))
    assert zarr_row.split() == ["zarr", version("zarr"), version("zarr"), "0.0.1"]


def test_cluster_up_gpus_gives_each_worker_its_own_gpu(state):
    from distributed import Client

    env = vol_env(**{STATE_ENV: str(state)})
    up = run_vol("cluster", "up", "--gpus", "2", "--dashboard-address", ":0", env=env)
    assert up.returncode == 0, up.stderr
    assert ": 2 workers of 1 thread, 2 GPUs (logs in" in up.stdout.splitlines()[0]
    address = json.loads((state / "cluster.json").read_text())["address"]
    try:
        with Client(address, timeout="10s") as client:
            pinned = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
        assert sorted(pinned.values()) == ["0", "1"]  # no GPU here: the machinery, not CUDA
        assert [w["resources"] for w in workers] == [{"GPU": 1}, {"GPU": 1}]
    finally:
        down = run_vol("cluster", "down", env=env)
    assert down.returncode == 0, down.stderr
