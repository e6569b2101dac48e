"""Cluster profiles: named clusters described in dask's configuration.

``--cluster NAME`` uses ``volumetric.profiles.NAME`` of dask's configuration,
e.g. from ``~/.config/dask/volumetric.yaml``::

    volumetric:
      profiles:
        slurm-gpu:              # vol predict ... --cluster slurm-gpu
          kind: slurm           # slurm, pbs, lsf (dask-jobqueue); local, cuda (this machine)
          cores: 16             # per job
          memory: 64GB          # per job
          gpus: 4               # per job: a worker process per GPU, each pinned to its own
          walltime: "02:00:00"
          jobs: 2               # jobs submitted when a command starts, cancelled when it ends
          queue: gpu
          account: mylab
        workstation:
          kind: local           # or cuda: dask-cuda's LocalCUDACluster, a worker per GPU
          workers: 4
          threads: 2
          memory-limit: 8GB

A job-queue profile takes any other keyword of dask-jobqueue's cluster
classes (``processes``, ``job-extra-directives``, ``interface``,
``scheduler-options``, ...). Its dashboard listens on 127.0.0.1:8787 unless
``dashboard-address`` says otherwise. Job-queue kinds need the ``hpc`` extra
(dask-jobqueue), ``cuda`` the ``gpu`` extra (dask-cuda).
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from volumetric.engine.gpu_pin import GPU_SLOTS_ENV, JOB_WORKERS_ENV
from volumetric.errors import ClusterError

if TYPE_CHECKING:
    from distributed.deploy import Cluster

JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster"}
KINDS = (*JOBQUEUE, "local", "cuda")
LOCAL_SETTINGS = ("workers", "threads", "memory-limit", "gpus", "dashboard-address")
_CLUSTER_ONLY = ("scheduler_options", "shared_temp_directory", "silence_logs", "name")
_EXTRA = {"dask_jobqueue": ("dask-jobqueue", "hpc"), "dask_cuda": ("dask-cuda", "gpu")}
DASHBOARD = "127.0.0.1:8787"
CONFIG_HINT = "volumetric.profiles in dask's config, e.g. ~/.config/dask/volumetric.yaml"


@dataclass(frozen=True)
class Profile:
    """A validated profile: its name, kind and settings (keys with hyphens)."""

    name: str
    kind: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def jobs(self) -> int:
        """Jobs a job-queue profile submits (1 unless set)."""
        return int(self.settings.get("jobs", 1))

    def start(self) -> Cluster:
        """Start the cluster: a LocalCluster (or LocalCUDACluster), or a job-queue cluster
        whose jobs are submitted now."""
        if self.kind in JOBQUEUE:
            return self._submitted()
        from volumetric.engine.cluster import local_cluster

        s = self.settings
        gpus = int(s.get("gpus", 0))
        if self.kind == "cuda":
            gpus = gpus or _imported("dask_cuda.utils", self).get_n_gpus()
        return local_cluster(s.get("workers"), threads_per_worker=int(s.get("threads", 1)),
                             memory_limit=s.get("memory-limit", "auto"), gpus=gpus,
                             dashboard_address=s.get("dashboard-address", DASHBOARD))

    def _submitted(self) -> Cluster:
        """A job-queue cluster whose jobs were submitted; one line when submitting failed."""
        from volumetric.engine.shutdown import quiet_logs

        cls = getattr(_imported("dask_jobqueue", self), JOBQUEUE[self.kind])
        cluster = cls(**self.cluster_keywords())
        for _ in range(self.jobs):  # what scale(jobs=) asks for, but submitted here, awaited
            cluster.worker_spec.update(cluster.new_worker_spec())
        try:
            with quiet_logs():  # distributed logs a failed submission's traceback too
                cluster.sync(cluster._correct_state)
        except Exception as exc:
            from distributed.core import Status

            for job in cluster.workers.values():  # never submitted: nothing to cancel
                if job.status == Status.created:
                    job.status = Status.failed
            with quiet_logs():
                cluster.close()
            raise ClusterError(f"profile {self.name}: submitting a job failed: "
                               f"{_submit_failure(exc)}") from None
        return cluster

    def cluster_keywords(self) -> dict[str, Any]:
        """Keywords of the dask-jobqueue cluster class (job-queue kinds)."""
        s = {k.replace("-", "_"): v for k, v in self.settings.items()
             if k not in ("kind", "jobs", "gpus", "dashboard-address")}
        s["scheduler_options"] = {"dashboard_address": self.settings.get("dashboard-address",
                                                                         DASHBOARD),
                                  **(s.get("scheduler_options") or {})}
        prologue = [*(s.get("job_script_prologue") or []), _worker_environ_line()]
        gpus = int(self.settings.get("gpus", 0))
        if gpus:
            processes = s.setdefault("processes", gpus)
            if processes < 1 or gpus % processes:
                raise ClusterError(f"profile {self.name}: gpus ({gpus}) must be a multiple of "
                                   f"processes ({processes})")
            per_worker = gpus // processes
            s["worker_extra_args"] = [*(s.get("worker_extra_args") or []), "--resources",
                                      f"GPU={per_worker}", "--preload", "volumetric.engine.gpu_pin"]
            prologue += [f"export {JOB_WORKERS_ENV}={processes}",
                         f"export {GPU_SLOTS_ENV}={per_worker}"]
            _ask_for_gpus(self.kind, gpus, s)
        s["job_script_prologue"] = prologue
        return s

    def job_script(self) -> str:
        """The script of one job (job-queue kinds), as it would be submitted; starts nothing.

        Raises
        ------
        ClusterError
            dask-jobqueue refuses the settings (an unknown keyword, no cores or memory).
        """
        module = _imported("dask_jobqueue", self)
        keywords = {k: v for k, v in self.cluster_keywords().items() if k not in _CLUSTER_ONLY}
        try:
            job = getattr(module, JOBQUEUE[self.kind]).job_cls(
                "tcp://scheduler:8786", name="dummy-name", **keywords)
            return str(job.job_script())
        except (TypeError, ValueError) as exc:
            raise ClusterError(f"profile {self.name}: {_refusal(exc)}") from None


def load_profile(name: str, named: str) -> Profile:
    """The profile ``name`` of dask's configuration, validated.

    Parameters
    ----------
    name : str
        The profile's name.
    named : str
        How it was named, for messages (``--cluster NAME``).

    Raises
    ------
    ClusterError
        No such profile (nor a scheduler file of that name), an unknown kind
        or setting, or a kind whose extra (dask-jobqueue, dask-cuda) is missing.
    """
    import dask

    profiles = dask.config.get("volumetric.profiles", default=None) or {}
    spec = profiles.get(name) if isinstance(profiles, dict) else None
    if spec is None:
        known = ", ".join(sorted(profiles)) if isinstance(profiles, dict) and profiles else "none"
        raise ClusterError(
            f"{named}: no scheduler file or profile of that name (profiles: {known}; "
            f"{CONFIG_HINT}); or give local, local:N or a scheduler address tcp://host:8786")
    if not isinstance(spec, dict) or spec.get("kind") not in KINDS:
        kind = spec.get("kind") if isinstance(spec, dict) else None
        raise ClusterError(f"profile {name}: kind {kind!r} is not one of {', '.join(KINDS)}")
    settings = {str(k).replace("_", "-"): v for k, v in spec.items()}
    profile = Profile(name, settings["kind"], settings)
    _check_numbers(profile)
    if profile.kind in JOBQUEUE:
        profile.job_script()
        submit = getattr(_imported("dask_jobqueue", profile), JOBQUEUE[profile.kind])
        command = shlex.split(submit.job_cls.submit_command)[0]
        if shutil.which(command) is None:
            raise ClusterError(f"profile {name} (kind {profile.kind}) submits jobs with {command}, "
                               "which is not on this machine's PATH: run the command where jobs "
                               "are submitted")
    else:
        unknown = sorted(set(settings) - {"kind", *LOCAL_SETTINGS})
        if unknown:
            raise ClusterError(f"profile {name}: unknown setting {unknown[0]!r} for kind "
                               f"{profile.kind} (settings: {', '.join(LOCAL_SETTINGS)})")
        if profile.kind == "cuda":
            _imported("dask_cuda", profile)
    return profile


def _check_numbers(profile: Profile) -> None:
    for key, least in (("jobs", 1), ("workers", 1), ("threads", 1), ("gpus", 0)):
        value = profile.settings.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < least):
            raise ClusterError(f"profile {profile.name}: {key} must be a whole number "
                               f">= {least}, not {value!r}")


def _ask_for_gpus(kind: str, gpus: int, keywords: dict[str, Any]) -> None:
    """Add the job directive that books ``gpus`` GPUs per job to ``keywords``."""
    if kind == "pbs":
        if "resource_spec" not in keywords and "cores" in keywords and "memory" in keywords:
            from dask.utils import parse_bytes
            from dask_jobqueue.pbs import pbs_format_bytes_ceil

            memory = pbs_format_bytes_ceil(parse_bytes(str(keywords["memory"])))
            keywords["resource_spec"] = (f"select=1:ncpus={keywords['cores']}:ngpus={gpus}"
                                         f":mem={memory}")
        return
    directive = {"slurm": f"--gres=gpu:{gpus}", "lsf": f'-gpu "num={gpus}"'}[kind]
    keywords["job_extra_directives"] = [*(keywords.get("job_extra_directives") or []), directive]


def _refusal(exc: Exception) -> str:
    """dask-jobqueue's refusal of a job's settings, in a line."""
    text = str(exc).strip()
    unknown = re.search(r"unexpected keyword argument '(\w+)'", text)
    if unknown:
        return (f"unknown setting {unknown.group(1).replace('_', '-')!r} "
                "(not a keyword of dask-jobqueue's job)")
    if "cores and memory" in text:
        return "give cores and memory per job (e.g. cores: 16, memory: 64GB)"
    return text.splitlines()[0] if text else type(exc).__name__


def _submit_failure(exc: Exception) -> str:
    """Why submitting a job failed, in a line: the submit command's own error if it said one."""
    text = str(exc)
    if "stderr:" in text:
        said = [line.strip() for line in text.split("stderr:", 1)[1].splitlines() if line.strip()]
        if said:
            return said[0]
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _worker_environ_line() -> str:
    """The job-script line that keeps block-sized buffers off glibc's mmap path in workers."""
    from volumetric.engine.cluster import WORKER_ENVIRON

    return f'export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON="{WORKER_ENVIRON!r}"'


def _imported(module: str, profile: Profile) -> Any:
    """``module``, or one line naming the extra to install for ``profile``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package, extra = _EXTRA[module.split(".")[0]]
        raise ClusterError(f"profile {profile.name} (kind {profile.kind}) needs {package}: "
                           f"pip install 'volumetric[{extra}]'") from None
