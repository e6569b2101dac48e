"""Training: patch datasets, losses and the training loop that writes a run directory.

Needs the ``ml`` extra: torch, tqdm (progress) and matplotlib (``curves.png``),
checked here so that a run never fails after training for want of a plot.

``volumetric.train`` names both this package and the public function
:func:`volumetric.ops.train.train` (``vol train``): importing the package
makes it the attribute of ``volumetric``, so the package is callable and
calling it calls the function.
"""

import sys
from types import ModuleType
from typing import Any

from volumetric.extras import require

for _module in ("torch", "tqdm", "matplotlib"):
    require(_module, extra="ml")

from volumetric.train.loop import FitResult, TrainSettings, fit  # noqa: E402
from volumetric.train.rundir import NetworkSpec  # noqa: E402

__all__ = ["FitResult", "NetworkSpec", "TrainSettings", "fit"]


class _CallablePackage(ModuleType):
    """This package, callable as :func:`volumetric.ops.train.train`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from volumetric.ops.train import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
