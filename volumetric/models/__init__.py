"""Networks, checkpoints and TorchScript files: needs the ``ml`` extra (torch)."""

from volumetric.extras import require

require("torch", extra="ml")
