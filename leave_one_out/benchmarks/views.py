"""View generation (``augment.make_views``): ms per batch, images and views per second.

python -m leave_one_out.benchmarks --what=views [--batch_size=256] [--sizes=64,224]
"""

from __future__ import annotations

import jax
import numpy as np

from leave_one_out import augment
from leave_one_out.benchmarks import timing


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
  rows = [
    "| output px | source px | batch | views | ms / batch | source images / s | views / s |",
    "|---|---|---|---|---|---|---|",
  ]
  for size in sizes:
    cfg = views_config(size)
    source = int(round(size * source_factor))
    images = jax.device_put(
      np.random.RandomState(0).randint(0, 256, (batch_size, source, source, 3)).astype(np.uint8)
    )
    make = jax.jit(lambda rng, x, cfg=cfg: augment.make_views(rng, x, cfg)[0])
    key = jax.random.key(0)
    n = repeats if size <= 128 else max(2, repeats // 2)
    seconds = timing.time_fn(lambda i: make(jax.random.fold_in(key, i), images), n)
    v = augment.num_views(cfg)
    rows.append(
      f"| {size} | {source} | {batch_size} | {v} | {1e3 * seconds:.1f} | "
      f"{batch_size / seconds:,.0f} | {v * batch_size / seconds:,.0f} |"
    )
  return "\n".join(rows)
