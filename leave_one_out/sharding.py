"""The device mesh every jitted function in the project shares.

One data-parallel axis over every device of every host: batches are sharded along it, params and
optimizer state are replicated.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  """A 1-D ``("data",)`` mesh over ``devices`` (default: all devices of all hosts)."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))
