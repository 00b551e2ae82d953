"""How programs map onto devices: the mesh every jitted function shares, and the XLA options
of the compiled train step and initial state per backend.

The mesh: one data-parallel axis over every device of every host; batches are sharded along it,
params and optimizer state are replicated.

Compiler options. On the CPU backend the train step is compiled with its convolutions on Eigen rather than on
YNNPACK. jaxlib 0.10.2's XLA:CPU hands every large convolution to YNNPACK; YNNPACK runs the
forward and input-gradient convolutions of a ResNet about as fast as Eigen, but the weight
gradient (a convolution whose window is the whole feature map, with a 3x3 output) several times
slower: in the LooC step of BENCHMARKS.md ("The CPU step against PyTorch's") those 20
convolutions took a third of the step. The option keeps YNNPACK for the dots and reductions it
gets by default (``xla_cpu_experimental_ynn_fusion_type``); results differ from the default's
by float32 rounding only.

The initial state (``train.create_state``) runs once per run and is mostly random-number code:
on the CPU backend it is compiled with XLA's backend optimisations off (``CPU_INIT``, what
``JAX_DISABLE_MOST_OPTIMIZATIONS`` sets for every program). Measured on 2 CPU cores for the
claims experiment's model: 15.7 s -> 3.0 s to compile; its values differ from an optimised
compile's by float32 rounding only (at most 6e-8).

The options are experimental XLA flags: a jaxlib that does not accept them (renamed or gone in
a newer release) gets none, with a warning, and compiles with its defaults. Accelerators get
none.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  """A 1-D ``("data",)`` mesh over ``devices`` (default: all devices of all hosts)."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


# Convolutions to Eigen; YNNPACK keeps dots and reductions (its default list, less
# INDIVIDUAL_CONVOLUTION).
CPU_TRAIN_STEP = {
  "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE",
}

# XLA's backend optimisations off (one-off programs: compiling costs more than running).
CPU_INIT = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def accepted(options: dict, device) -> bool:
  """Whether this jaxlib compiles a trivial program for ``device`` with ``options``. Asked once
  per process for each set of options and kind of device (``_ACCEPTED``)."""
  key = (tuple(sorted(options.items())), device.platform, device.device_kind)
  if key not in _ACCEPTED:
    _ACCEPTED[key] = _compiles_with(options, device)
  return _ACCEPTED[key]


# (options, platform, device kind) -> whether XLA accepts the options: a memo of ``accepted``
# (each question compiles a program), which no caller changes.
_ACCEPTED: dict[tuple, bool] = {}


def _compiles_with(options: dict, device) -> bool:
  try:
    jax.jit(lambda x: x + 1).lower(jax.device_put(1.0, device)).compile(options)
  except Exception as error:  # pylint: disable=broad-except
    logging.warning(
      "XLA does not accept the compiler options %s (%s); using its defaults.",
      options,
      str(error).splitlines()[0] if str(error) else type(error).__name__,
    )
    return False
  return True


def _cpu_options(options: dict, mesh) -> dict | None:
  """``options`` when every device of ``mesh`` is a CPU and XLA accepts them, else None."""
  devices = list(mesh.devices.flat)
  if any(d.platform != "cpu" for d in devices):
    return None
  return dict(options) if accepted(options, devices[0]) else None


def train_step_options(mesh) -> dict | None:
  """``compiler_options`` for a train step jitted over ``mesh``: ``CPU_TRAIN_STEP`` on CPUs,
  else None (XLA's defaults)."""
  return _cpu_options(CPU_TRAIN_STEP, mesh)


def init_options(mesh) -> dict | None:
  """``compiler_options`` for the initial state jitted over ``mesh``: ``CPU_INIT`` on CPUs,
  else None (XLA's defaults)."""
  return _cpu_options(CPU_INIT, mesh)
