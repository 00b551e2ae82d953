"""Benchmarks, printed as Markdown tables with the machine they ran on.

  python -m leave_one_out.benchmark --what=views [--batch_size=256] [--sizes=64,224]
  python -m leave_one_out.benchmark --what=step --model=resnet50 --step_size=224 \
      --batch_size=256 --precision=bfloat16 --num_spaces=3 [--kinds=looc,moco,supervised]

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
from leave_one_out import config as config_lib
from leave_one_out import models
from leave_one_out import sharding
from leave_one_out import train

_WHAT = flags.DEFINE_list("what", ["views"], "Benchmarks to run (comma-separated).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Images per batch.")
_SIZES = flags.DEFINE_list("sizes", ["64", "224"], "Output sides S of the views benchmark.")
_SOURCE_FACTOR = flags.DEFINE_float("source_factor", 1.15, "Source side / output side.")
_MODEL = flags.DEFINE_string("model", "resnet18", "step: architecture (models.ARCHITECTURES).")
_WIDTH = flags.DEFINE_integer("width", 64, "step: channels of the first stage.")
_STEP_SIZE = flags.DEFINE_integer("step_size", 64, "step: view side S.")
_NUM_SPACES = flags.DEFINE_integer("num_spaces", 3, "step: n, augmentation-specific spaces.")
_PRECISION = flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                               "step: computation dtype.")
_KINDS = flags.DEFINE_list("kinds", ["looc", "moco", "supervised"],
                           "step: looc (n spaces), moco (n = 0, two views), supervised (one "
                           "view, cross-entropy) -- the same backbone in the same run.")
_PEAK_TFLOPS = flags.DEFINE_float("peak_tflops", 0.0, "step: the device's peak TFLOP/s for the "
                                  "utilisation column (0: look it up from the device kind).")
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


SPACES = ("color", "rotation", "texture", "blur", "flip")
# Dense bf16 peak TFLOP/s by device kind, for the utilisation column.
PEAK_TFLOPS = {"NVIDIA H100 80GB HBM3": 989.0, "NVIDIA H100": 989.0, "NVIDIA H200": 989.0,
               "NVIDIA A100-SXM4-80GB": 312.0, "NVIDIA A100-SXM4-40GB": 312.0,
               "TPU v4": 275.0, "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v5p": 459.0}


def step_config(kind: str, model: str, width: int, size: int, batch: int, precision: str,
                num_spaces: int):
  """The training config a ``--what=step`` row times."""
  cfg = config_lib.default_config()
  cfg.data.image_size = int(round(size * 1.15))
  cfg.augment = views_config(size)
  cfg.augment.spaces = SPACES[:num_spaces] if kind == "looc" else ()
  cfg.model.architecture = model
  cfg.model.width = width
  cfg.model.dtype = precision
  cfg.loss.queue_size = 0  # in-batch negatives, as the figures in BENCHMARKS.md
  cfg.train.batch_size = batch
  cfg.train.num_steps = 1000
  return cfg


class _Supervised(models.nn.Module):
  """The same backbone with a linear classifier: the cost baseline of one forward+backward."""
  backbone: models.LooCModel
  num_classes: int = 1000

  @models.nn.compact
  def __call__(self, x, train: bool = True):
    feature = self.backbone(x, train=train)["feature"]
    return train_dense(self.num_classes)(feature)


def train_dense(n):
  return models.nn.Dense(n, name="classifier")


def _supervised_step(cfg, mesh):
  """(jitted step, state, batch): one crop+flip view, cross-entropy, SGD."""
  import optax
  from jax.sharding import NamedSharding, PartitionSpec as P
  model = _Supervised(models.build_model(cfg))
  size = cfg.augment.image_size
  variables = jax.jit(lambda: model.init(jax.random.key(0), jax.numpy.zeros((2, size, size, 3)),
                                         train=False))()
  tx = optax.sgd(0.1, momentum=0.9)
  state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
  view_cfg = cfg.augment.copy_and_resolve_references()
  view_cfg.spaces = ()

  def step(state, batch, rng):
    params, stats, opt = state
    views, _ = augment.make_views(rng, batch["image"], view_cfg, batch["aspect"])

    def loss_fn(p):
      logits, upd = model.apply({"params": p, "batch_stats": stats}, views[0], train=True,
                                mutable=["batch_stats"])
      labels = batch["label"]
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), upd

    (loss, upd), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    return (optax.apply_updates(params, updates), upd["batch_stats"], opt), loss

  rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P(sharding.DATA_AXIS))
  jitted = jax.jit(step, in_shardings=(rep, data, rep), out_shardings=(rep, rep),
                   donate_argnums=0)
  return jitted, jax.device_put(state, rep)


def _batch(cfg, mesh, with_label=False):
  from jax.sharding import NamedSharding, PartitionSpec as P
  b, s = cfg.train.batch_size, cfg.data.image_size
  rng = np.random.RandomState(0)
  batch = {"image": rng.randint(0, 256, (b, s, s, 3)).astype(np.uint8),
           "aspect": np.ones((b,), np.float32)}
  if with_label:
    batch["label"] = rng.randint(0, 1000, (b,)).astype(np.int32)
  return jax.device_put(batch, NamedSharding(mesh, P(sharding.DATA_AXIS)))


def _peak_memory_gib() -> float | None:
  stats = jax.devices()[0].memory_stats() or {}  # the CPU backend keeps no statistics
  peak = stats.get("peak_bytes_in_use")
  return peak / 2**30 if peak else None


def measure_steps(kinds, model, width, size, batch, precision, num_spaces,
                  repeats) -> list[dict]:
  """Times the jitted train step of each kind (same backbone, same run).

  Returns one dict per kind: "kind", "views" (views per image), "compile_s", "step_s" (median
  of ``repeats`` steps), "flops" (per step, all devices; 0 if XLA gives no cost analysis),
  "views_s" (``make_views`` alone, for the same batch) and "peak_gib" (the process's peak
  device memory so far, None on CPU).
  """
  mesh = sharding.make_mesh()
  measured = []
  for kind in kinds:
    cfg = step_config(kind, model, width, size, batch, precision, num_spaces)
    key = jax.random.key(1)
    if kind == "supervised":
      fn, state = _supervised_step(cfg, mesh)
      data = _batch(cfg, mesh, with_label=True)
      args = lambda st, i: (st, data, jax.random.fold_in(key, i))
      views = 1
    else:
      net = models.build_model(cfg)
      tx, schedule = train.create_optimizer(cfg, 100)
      state = train.create_state(cfg, net, tx, mesh)
      fn = train.compile_train_step(cfg, net, tx, mesh, schedule, 1000)
      data = _batch(cfg, mesh)
      args = lambda st, i: (st, data)
      views = augment.num_views(cfg.augment)
    t0 = time.perf_counter()
    compiled = fn.lower(*args(state, 0)).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float((cost or {}).get("flops", 0.0)) * mesh.size  # per-device program
    state, _ = compiled(*args(state, 0))
    jax.block_until_ready(state)
    times = []
    for i in range(repeats):
      start = time.perf_counter()
      state, out = compiled(*args(state, i + 1))
      jax.block_until_ready(out)
      times.append(time.perf_counter() - start)
    del state
    view_cfg = cfg.augment
    make = jax.jit(lambda r, x, a, c=view_cfg: augment.make_views(r, x, c, a)[0])
    view_s = time_fn(lambda i: make(jax.random.fold_in(key, i), data["image"], data["aspect"]),
                     max(2, repeats // 2))
    measured.append({"kind": kind, "views": views, "compile_s": compile_s,
                     "step_s": statistics.median(times), "flops": flops, "views_s": view_s,
                     "peak_gib": _peak_memory_gib()})
  return measured


def format_steps(measured: list[dict], model, width, size, batch, precision,
                 peak_tflops) -> str:
  """``measure_steps``'s results as a Markdown table ("x supervised": step time ratio)."""
  num_devices = jax.device_count()
  kind0 = jax.devices()[0].device_kind
  peak = peak_tflops or PEAK_TFLOPS.get(kind0, 0.0)
  rows = [f"{model} (width {width}) at {size} px, global batch {batch}, {precision}, "
          f"{num_devices} x {kind0}", "",
          "| step | views | compile s | step ms | img/s | img/s/device | x supervised | "
          "TFLOP/step | TFLOP/s | of peak | views ms (share) | peak GiB |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  supervised = {m["kind"]: m["step_s"] for m in measured}.get("supervised")
  for m in measured:
    seconds = m["step_s"]
    ratio = f"{seconds / supervised:.2f}" if supervised else "-"
    tflops = m["flops"] / seconds / 1e12
    share = f"{1e3 * m['views_s']:.0f} ({100 * m['views_s'] / seconds:.0f}%)"
    memory = f"{m['peak_gib']:.1f}" if m["peak_gib"] else "n/a"
    rows.append(
        f"| {m['kind']} | {m['views']} | {m['compile_s']:.1f} | {1e3 * seconds:.1f} | "
        f"{batch / seconds:,.0f} | {batch / seconds / num_devices:,.0f} | {ratio} | "
        f"{m['flops'] / 1e12:.3f} | {tflops:.2f} | "
        f"{f'{100 * tflops / peak:.0f}%' if peak else 'n/a'} | {share} | {memory} |")
  return "\n".join(rows)


def bench_step(kinds, model, width, size, batch, precision, num_spaces, repeats,
               peak_tflops) -> str:
  """The jitted train step: compile time, step time, img/s, TFLOP/s and peak memory.

  LooC's extra cost over a supervised step is n+1 key forwards plus one query forward+backward
  (about (n+1)/3 + 1 supervised steps: 7/3 for n = 3); "x supervised" shows the measured ratio.
  """
  measured = measure_steps(kinds, model, width, size, batch, precision, num_spaces, repeats)
  return format_steps(measured, model, width, size, batch, precision, peak_tflops)


BENCHMARKS: dict[str, Callable[[], str]] = {
    "views": lambda: bench_views(_BATCH_SIZE.value, [int(s) for s in _SIZES.value],
                                 _SOURCE_FACTOR.value, _REPEATS.value),
    "step": lambda: bench_step(_KINDS.value, _MODEL.value, _WIDTH.value, _STEP_SIZE.value,
                               _BATCH_SIZE.value, _PRECISION.value, _NUM_SPACES.value,
                               _REPEATS.value, _PEAK_TFLOPS.value),
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
