"""Training: patch datasets, losses and the training loop that writes a run directory."""

from volumetric.train.loop import FitResult, TrainSettings, fit
from volumetric.train.rundir import NetworkSpec

__all__ = ["FitResult", "NetworkSpec", "TrainSettings", "fit"]
