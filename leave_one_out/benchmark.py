"""Benchmarks, printed as Markdown tables with the machine they ran on.

  python -m leave_one_out.benchmark --what=views [--batch_size=256] [--sizes=64,224]

``--what`` is a comma-separated list of benchmarks (``BENCHMARKS``); each is a function
``(args) -> str`` returning a Markdown table. Timings are of jitted functions after a warm-up
(compile + one run), the median of ``--repeats`` runs, each ended with ``block_until_ready``.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

from absl import app, flags
import jax
import numpy as np

from leave_one_out import augment

_WHAT = flags.DEFINE_list("what", ["views"], "Benchmarks to run (comma-separated).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Images per batch.")
_SIZES = flags.DEFINE_list("sizes", ["64", "224"], "Output sides S of the views benchmark.")
_SOURCE_FACTOR = flags.DEFINE_float("source_factor", 1.15, "Source side / output side.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per case (median reported); sides "
                                "above 128 px use max(2, repeats // 2).")


def machine_description() -> str:
  """One line: CPU count, platform, JAX backend and devices, load average (other processes
  sharing the machine slow a CPU benchmark down)."""
  devices = jax.devices()
  kinds = sorted({d.device_kind for d in devices})
  load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
  return (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
          f"jax {jax.__version__}, backend {jax.default_backend()}, "
          f"{len(devices)} x {', '.join(kinds)}; load average {load} (1, 5, 15 min)")


def time_fn(fn: Callable[[int], object], repeats: int) -> float:
  """Median seconds of fn(i) (its outputs are blocked on), after one warm-up call."""
  jax.block_until_ready(fn(0))
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(i + 1))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def views_config(size: int):
  """All augmentations on, spaces colour, rotation, texture (n = 3, five views)."""
  cfg = augment.default_config()
  cfg.image_size = size
  cfg.texture.enabled = True
  cfg.spaces = ("color", "rotation", "texture")
  augment.validate(cfg)
  return cfg


def bench_views(batch_size: int, sizes: list[int], source_factor: float, repeats: int) -> str:
  """View generation (``augment.make_views``, jitted): ms per batch and images per second."""
  rows = ["| output px | source px | batch | views | ms / batch | source images / s | "
          "views / s |", "|---|---|---|---|---|---|---|"]
  for size in sizes:
    cfg = views_config(size)
    source = int(round(size * source_factor))
    images = jax.device_put(np.random.RandomState(0).randint(
        0, 256, (batch_size, source, source, 3)).astype(np.uint8))
    make = jax.jit(lambda rng, x, cfg=cfg: augment.make_views(rng, x, cfg)[0])
    key = jax.random.key(0)
    n = repeats if size <= 128 else max(2, repeats // 2)
    seconds = time_fn(lambda i: make(jax.random.fold_in(key, i), images), n)
    v = augment.num_views(cfg)
    rows.append(f"| {size} | {source} | {batch_size} | {v} | {1e3 * seconds:.1f} | "
                f"{batch_size / seconds:,.0f} | {v * batch_size / seconds:,.0f} |")
  return "\n".join(rows)


BENCHMARKS: dict[str, Callable[[], str]] = {
    "views": lambda: bench_views(_BATCH_SIZE.value, [int(s) for s in _SIZES.value],
                                 _SOURCE_FACTOR.value, _REPEATS.value),
}


def main(argv):
  del argv
  unknown = [w for w in _WHAT.value if w not in BENCHMARKS]
  if unknown:
    raise app.UsageError(f"unknown --what {unknown}; choose from {sorted(BENCHMARKS)}")
  print(f"Machine: {machine_description()}\n")
  for what in _WHAT.value:
    print(f"## {what}\n\n{BENCHMARKS[what]()}\n", flush=True)


if __name__ == "__main__":
  app.run(main)
