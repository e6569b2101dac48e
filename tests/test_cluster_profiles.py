"""``--cluster PROFILE`` and ``local:N``: clusters named in dask's config, checked before anything
is written; a job-queue profile run end to end on a stand-in SLURM on this machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import dask
import numpy as np
import pytest
import zarr
from dask_processes import worker_zarr_config

from volumetric.engine.cluster import connect
from volumetric.engine.gpu_pin import dask_setup, pinned_devices
from volumetric.engine.scheduler import CLUSTER_ENV, CONNECT_TIMEOUT_ENV
from volumetric.engine.targets import resolve_target
from volumetric.errors import ClusterError

VOL = str(Path(sys.executable).with_name("vol"))
PROFILES = {
    "gpu-slurm": {"kind": "slurm", "cores": 8, "memory": "32GB", "gpus": 2, "jobs": 3,
                  "walltime": "01:00:00", "queue": "gpu"},
    "gpu-pbs": {"kind": "pbs", "cores": 4, "memory": "16GB", "gpus": 1},
    "gpu-lsf": {"kind": "lsf", "cores": 4, "memory": "16GB", "gpus": 1},
    "cpu-slurm": {"kind": "slurm", "cores": 4, "memory": "8GB", "processes": 2,
                  "job_extra_directives": ["--exclusive"]},
    "two": {"kind": "local", "workers": 2, "threads": 1, "memory-limit": "1GiB"},
    "one-of-two-threads": {"kind": "local", "workers": 1, "threads": 2},
}


@pytest.fixture
def profiles(monkeypatch, tmp_path):
    """PROFILES in dask's config, and submit commands on the PATH (that are never run)."""
    monkeypatch.delenv(CLUSTER_ENV, raising=False)
    for command in ("sbatch", "qsub", "bsub"):
        (tmp_path / command).write_text("#!/bin/sh\nexit 1\n")
        (tmp_path / command).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with dask.config.set({"volumetric.profiles": PROFILES}):
        yield


def test_a_slurm_gpu_profile_books_its_gpus_and_pins_a_worker_to_each(profiles):
    target = resolve_target("gpu-slurm")
    assert (target.kind, target.profile.kind, target.profile.jobs) == ("profile", "slurm", 3)
    script = target.profile.job_script()
    for line in ("#SBATCH -p gpu", "#SBATCH --cpus-per-task=8", "#SBATCH -t 01:00:00",
                 "#SBATCH --gres=gpu:2", "export VOLUMETRIC_JOB_WORKERS=2",
                 "export VOLUMETRIC_GPU_SLOTS=1"):
        assert line in script.splitlines()
    worker = script.splitlines()[-1]
    assert "--nworkers 2" in worker and "--nthreads 4" in worker
    assert "--resources GPU=1 --preload volumetric.engine.gpu_pin" in worker
    assert "MALLOC_MMAP_THRESHOLD_" in script


def test_pbs_and_lsf_profiles_book_gpus_their_way(profiles):
    pbs = resolve_target("gpu-pbs").profile.job_script().splitlines()
    assert "#PBS -l select=1:ncpus=4:ngpus=1:mem=15GB" in pbs
    lsf = resolve_target("gpu-lsf").profile.job_script().splitlines()
    assert '#BSUB -gpu "num=1"' in lsf


def test_a_profile_passes_dask_jobqueue_keywords_on(profiles):
    script = resolve_target("cpu-slurm").profile.job_script()
    assert "#SBATCH --exclusive" in script.splitlines()
    assert "--nworkers 2" in script and "--resources" not in script


@pytest.mark.parametrize("spec, message", [
    ({"kind": "slurm", "cores": 2, "memory": "1GB", "colour": "red"},
     "profile p: unknown setting 'colour' (not a keyword of dask-jobqueue's job)"),
    ({"kind": "slurm"}, "profile p: give cores and memory per job"),
    ({"kind": "k8s"}, "profile p: kind 'k8s' is not one of slurm, pbs, lsf, local, cuda"),
    ({"kind": "slurm", "cores": 2, "memory": "1GB", "jobs": 0},
     "profile p: jobs must be a whole number >= 1, not 0"),
    ({"kind": "slurm", "cores": 2, "memory": "1GB", "gpus": 3, "processes": 2},
     "profile p: gpus (3) must be a multiple of processes (2)"),
    ({"kind": "local", "nodes": 2}, "profile p: unknown setting 'nodes' for kind local"),
    ("slurm", "profile p: kind None is not one of"),
])
def test_bad_profiles_are_refused_in_one_line(monkeypatch, spec, message):
    monkeypatch.delenv(CLUSTER_ENV, raising=False)
    with dask.config.set({"volumetric.profiles": {"p": spec}}), \
            pytest.raises(ClusterError) as info:
        resolve_target("p")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_an_unknown_profile_names_the_known_ones(profiles):
    with pytest.raises(ClusterError, match=r"^--cluster gpu: no scheduler file or profile of "
                                           r"that name \(profiles: cpu-slurm, gpu-lsf, "):
        resolve_target("gpu")


@pytest.mark.parametrize("kind, module, extra", [("slurm", "dask_jobqueue", "hpc"),
                                                 ("cuda", "dask_cuda", "gpu")])
def test_a_profile_without_its_extra_names_the_extra(monkeypatch, kind, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing fails
    spec = {"kind": kind, "cores": 2, "memory": "1GB"} if kind == "slurm" else {"kind": kind}
    with dask.config.set({"volumetric.profiles": {"p": spec}}), \
            pytest.raises(ClusterError) as info:
        resolve_target("p")
    package = module.replace("_", "-")
    assert str(info.value) == (f"profile p (kind {kind}) needs {package}: "
                               f"pip install 'volumetric[{extra}]'")


def test_local_n_and_a_local_profile_start_that_many_workers(profiles):
    with connect("local:2", quiet=True) as client:
        assert len(client.scheduler_info()["workers"]) == 2
    with connect("two", quiet=True) as client:
        workers = client.scheduler_info()["workers"].values()
        assert [w["memory_limit"] for w in workers] == [2**30, 2**30]
        assert client.dashboard_link.startswith("http://127.0.0.1:")


def test_each_worker_process_gets_one_zarr_thread_per_task_thread(profiles):
    with connect("local:2", quiet=True) as client:
        assert worker_zarr_config(client) == [1, 1]
    with connect("one-of-two-threads", quiet=True) as client:
        assert worker_zarr_config(client) == [2]
    before = zarr.config.get("threading.max_workers")
    with connect("local:2", quiet=True, in_process=True) as client:  # workers of this process
        assert set(worker_zarr_config(client)) == {before}


def test_zarr_settings_of_the_environment_reach_forked_workers(profiles, monkeypatch):
    with connect("local:1", quiet=True):  # the forkserver runs, zarr imported in it
        pass
    monkeypatch.setenv("ZARR_ARRAY__ORDER", "F")
    with connect("local:2", quiet=True) as client:
        assert worker_zarr_config(client, "array.order") == ["F", "F"]


@pytest.mark.parametrize("value", ["nosuchprofile", "local:0"])
def test_cli_refuses_an_unusable_cluster_and_writes_nothing(tmp_path, value):
    np.save(tmp_path / "a.npy", np.zeros((4, 8, 8), np.uint8))
    env = {k: v for k, v in os.environ.items() if k != CLUSTER_ENV}
    result = subprocess.run([VOL, "convert", str(tmp_path / "a.npy"), str(tmp_path / "d.zarr"),
                             "--cluster", value], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"vol: error: --cluster {value}: ")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "d.zarr").exists()


def test_pinned_devices_split_the_job_gpus_between_its_workers(monkeypatch):
    assert [pinned_devices(f"j-{i}", 4, 1, None) for i in range(4)] == ["0", "1", "2", "3"]
    assert pinned_devices("j-1", 2, 2, "3,5,6,7") == "6,7"
    assert pinned_devices("SLURMCluster-3", 1, 1, "2") is None  # one worker: the job's GPUs

    class Worker:
        name = "SLURMCluster-0-1"

    monkeypatch.setenv("VOLUMETRIC_JOB_WORKERS", "2")
    monkeypatch.setenv("VOLUMETRIC_GPU_SLOTS", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    dask_setup(Worker())
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "6"


SBATCH = """#!/bin/bash
# a stand-in for sbatch on this machine: runs the job script at once, in a session of its own
id=$(( $(ls "$FAKE_QUEUE" | wc -l) + 100 ))
cp "$1" "$FAKE_QUEUE/$id.sh"
setsid bash "$FAKE_QUEUE/$id.sh" > "$FAKE_QUEUE/$id.log" 2>&1 < /dev/null &
echo $! > "$FAKE_QUEUE/$id.pid"
echo "Submitted batch job $id"
"""
SCANCEL = """#!/bin/bash
touch "$FAKE_QUEUE/$1.cancelled"
kill -TERM -- -"$(cat "$FAKE_QUEUE/$1.pid")"
"""
FAKE_PROFILE = """volumetric:
  profiles:
    fake-slurm:
      kind: slurm
      cores: 2
      memory: 2GB
      processes: 2
      jobs: 1
      walltime: "00:10:00"
      scheduler-options: {host: 127.0.0.1}
"""


@pytest.fixture
def fake_slurm(tmp_path):
    """``sbatch`` and ``scancel`` that run jobs here, and a dask config with a SLURM profile."""
    bin_dir, queue, config = tmp_path / "bin", tmp_path / "queue", tmp_path / "config"
    for folder in (bin_dir, queue, config):
        folder.mkdir()
    for name, text in (("sbatch", SBATCH), ("scancel", SCANCEL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (config / "volumetric.yaml").write_text(FAKE_PROFILE)
    env = {k: v for k, v in os.environ.items() if k != CLUSTER_ENV}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_QUEUE=str(queue), DASK_CONFIG=str(config))
    env[CONNECT_TIMEOUT_ENV] = "5"
    try:
        yield env, queue
    finally:
        for pid in queue.glob("*.pid"):
            with suppress(ProcessLookupError, ValueError):
                os.killpg(int(pid.read_text()), signal.SIGKILL)


def test_a_slurm_profile_runs_the_command_on_the_jobs_it_submits(fake_slurm, tmp_path, vol):
    env, queue = fake_slurm
    mask = (np.random.default_rng(0).random((12, 24, 24)) > 0.95).astype(np.uint8)
    np.save(tmp_path / "m.npy", mask)
    result = subprocess.run([VOL, "distance", str(tmp_path / "m.npy"), str(tmp_path / "d.zarr"),
                             "--clip", "3", "--cluster", "fake-slurm"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "submitted 1 SLURM job(s) of profile fake-slurm" in result.stderr
    script = next(queue.glob("*.sh")).read_text()
    assert "--nworkers 2" in script and "tcp://127.0.0.1:" in script
    assert "Registered to:" in next(queue.glob("*.log")).read_text()  # its workers joined
    assert [p.stem for p in queue.glob("*.cancelled")] == [p.stem for p in queue.glob("*.sh")]
    expected = vol("distance", tmp_path / "m.npy", tmp_path / "e.zarr", "--clip", "3")
    assert expected.exit_code == 0, expected.output
    import zarr

    assert np.array_equal(zarr.open(str(tmp_path / "d.zarr"))["0"][:],
                          zarr.open(str(tmp_path / "e.zarr"))["0"][:])


def test_a_job_queue_profile_needs_its_submit_command(monkeypatch, tmp_path):
    monkeypatch.delenv(CLUSTER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with dask.config.set({"volumetric.profiles": PROFILES}), \
            pytest.raises(ClusterError) as info:
        resolve_target("cpu-slurm")
    assert str(info.value) == ("profile cpu-slurm (kind slurm) submits jobs with sbatch, which is "
                               "not on this machine's PATH: run the command where jobs are "
                               "submitted")


def test_a_refused_job_submission_is_one_line(fake_slurm, tmp_path):
    env, queue = fake_slurm
    sbatch = Path(env["PATH"].split(":")[0]) / "sbatch"
    sbatch.write_text("#!/bin/bash\necho 'sbatch: error: Invalid account' >&2\nexit 1\n")
    np.save(tmp_path / "a.npy", np.zeros((4, 8, 8), np.uint8))
    result = subprocess.run([VOL, "convert", str(tmp_path / "a.npy"), str(tmp_path / "o.zarr"),
                             "--cluster", "fake-slurm"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == ("vol: error: profile fake-slurm: submitting a job "
                                              "failed: sbatch: error: Invalid account")
    assert "Traceback" not in result.stderr
    assert not list(queue.iterdir())


EXAMPLE = Path(__file__).parents[1] / "docs" / "examples" / "volumetric.yaml"


def test_the_example_slurm_profiles_render_their_job_scripts(monkeypatch, tmp_path):
    """docs/examples/volumetric.yaml, through dask-jobqueue, without submitting anything."""
    import yaml

    monkeypatch.chdir(tmp_path)  # dask-jobqueue makes the log directory where a command runs
    monkeypatch.delenv(CLUSTER_ENV, raising=False)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sbatch").write_text("#!/bin/sh\ntouch \"$0.ran\"\nexit 1\n")
    (tmp_path / "bin" / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    with dask.config.set(yaml.safe_load(EXAMPLE.read_text())):
        gpu, cpu = resolve_target("slurm-gpu").profile, resolve_target("slurm-cpu").profile
        gpu_script, cpu_script = gpu.job_script().splitlines(), cpu.job_script().splitlines()
    assert (gpu.kind, gpu.jobs, cpu.kind, cpu.jobs) == ("slurm", 8, "slurm", 4)
    for line in ("#SBATCH -p gpu", "#SBATCH -A mylab", "#SBATCH -n 1",
                 "#SBATCH --cpus-per-task=32", "#SBATCH --mem=224G", "#SBATCH -t 04:00:00",
                 "#SBATCH --exclusive", "#SBATCH --gres=gpu:4",
                 "#SBATCH -o dask-logs/dask-worker-%J.out", "export VOLUMETRIC_JOB_WORKERS=4",
                 "export VOLUMETRIC_GPU_SLOTS=1"):
        assert line in gpu_script, line
    worker = gpu_script[-1].split()
    assert worker[1:3] == ["-m", "distributed.cli.dask_worker"]
    for option in (["--nworkers", "4"], ["--nthreads", "8"], ["--local-directory", "/tmp"],
                   ["--resources", "GPU=1"], ["--preload", "volumetric.engine.gpu_pin"]):
        assert " ".join(option) in " ".join(worker), option
    for line in ("#SBATCH -p cpu", "#SBATCH --cpus-per-task=64", "#SBATCH --mem=239G",
                 "#SBATCH -t 02:00:00"):
        assert line in cpu_script, line
    assert "--nworkers 16" in cpu_script[-1] and "--nthreads 4" in cpu_script[-1]
    assert "--resources" not in cpu_script[-1] and "--gres" not in " ".join(cpu_script)
    assert (tmp_path / "dask-logs").is_dir()
    assert not (tmp_path / "bin" / "sbatch.ran").exists()  # rendered, never submitted
