"""XLA compiler options of the jitted train step, per backend.

On the CPU backend the train step is compiled with its convolutions on Eigen rather than on
YNNPACK. jaxlib 0.10.2's XLA:CPU hands every large convolution to YNNPACK; YNNPACK runs the
forward and input-gradient convolutions of a ResNet about as fast as Eigen, but the weight
gradient (a convolution whose window is the whole feature map, with a 3x3 output) several times
slower: in the LooC step of BENCHMARKS.md ("The CPU step against PyTorch's") those 20
convolutions took a third of the step. The option keeps YNNPACK for the dots and reductions it
gets by default (``xla_cpu_experimental_ynn_fusion_type``); results differ from the default's
by float32 rounding only.

The options are experimental XLA flags: a jaxlib that does not accept them (renamed or gone in
a newer release) gets none, with a warning, and compiles with its defaults. Accelerators get
none.
"""

from __future__ import annotations

from absl import logging
import jax

# Convolutions to Eigen; YNNPACK keeps dots and reductions (its default list, less
# INDIVIDUAL_CONVOLUTION).
CPU_TRAIN_STEP = {
    "xla_cpu_experimental_ynn_fusion_type":
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE",
}


def accepted(options: dict, device) -> bool:
  """Whether this jaxlib compiles a trivial program for ``device`` with ``options``."""
  try:
    jax.jit(lambda x: x + 1).lower(jax.device_put(1.0, device)).compile(options)
  except Exception as error:  # pylint: disable=broad-except
    logging.warning("XLA does not accept the compiler options %s (%s); using its defaults.",
                    options, str(error).splitlines()[0] if str(error) else type(error).__name__)
    return False
  return True


def train_step_options(mesh) -> dict | None:
  """``compiler_options`` for a train step jitted over ``mesh``: ``CPU_TRAIN_STEP`` when every
  device is a CPU and XLA accepts it, else None (XLA's defaults)."""
  devices = list(mesh.devices.flat)
  if any(d.platform != "cpu" for d in devices):
    return None
  return dict(CPU_TRAIN_STEP) if accepted(CPU_TRAIN_STEP, devices[0]) else None
