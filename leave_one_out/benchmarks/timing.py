"""What every benchmark shares: the machine it ran on, and timing of jitted functions.

Timings are of jitted functions after a warm-up (compile + one run), the median of ``repeats``
runs, each ended with ``block_until_ready``; figures go in BENCHMARKS.md with the machine line.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time
from typing import Callable

import jax


def _version(*distributions: str) -> str | None:
  for name in distributions:
    try:
      return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      continue
  return None


def machine_description() -> str:
  """One line: CPU count, platform, library versions, JAX backend and devices, load average
  (other processes sharing the machine slow a CPU benchmark down)."""
  devices = jax.devices()
  kinds = sorted({d.device_kind for d in devices})
  load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
  tf = _version("tensorflow", "tensorflow-cpu")
  return (
    f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
    f"jax {jax.__version__}{f', tensorflow {tf}' if tf else ''}, "
    f"backend {jax.default_backend()}, {len(devices)} x {', '.join(kinds)}; "
    f"load average {load} (1, 5, 15 min)"
  )


def time_fn(fn: Callable[[int], object], repeats: int) -> float:
  """Median seconds of fn(i) (its outputs are blocked on), after one warm-up call."""
  jax.block_until_ready(fn(0))
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(i + 1))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def time_steps(step: Callable, state, args: Callable[[int], tuple], repeats: int):
  """A train step's median seconds: ``state, out = step(state, *args(i))``, after one warm-up.

  Returns (median seconds, the final state). The state is threaded through (donated steps).
  """
  state, out = step(state, *args(0))
  jax.block_until_ready(out)
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    state, out = step(state, *args(i + 1))
    jax.block_until_ready(out)
    times.append(time.perf_counter() - start)
  return statistics.median(times), state


def peak_memory_gib() -> float | None:
  """The process's peak device memory so far (None on the CPU backend, which keeps none)."""
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return peak / 2**30 if peak else None
