"""Training: patch datasets, losses and the training loop that writes a run directory.

Needs the ``ml`` extra: torch, tqdm (progress) and matplotlib (``curves.png``),
checked here so that a run never fails after training for want of a plot.
"""

from volumetric.extras import require

for _module in ("torch", "tqdm", "matplotlib"):
    require(_module, extra="ml")

from volumetric.train.loop import FitResult, TrainSettings, fit  # noqa: E402
from volumetric.train.rundir import NetworkSpec  # noqa: E402

__all__ = ["FitResult", "NetworkSpec", "TrainSettings", "fit"]
