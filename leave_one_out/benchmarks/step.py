"""The jitted train step: LooC vs MoCo vs a supervised step of the same backbone, and the
auxiliary objectives on either.

  python -m leave_one_out.benchmarks --what=step --model=resnet50 --step_size=224 \
      --batch_size=256 --precision=bfloat16 --num_spaces=3 [--kinds=looc,moco,supervised]
  python -m leave_one_out.benchmarks --what=step \
      --kinds=moco,moco+augself,moco+essl,moco+cassle,looc,looc+augself,looc+essl,looc+cassle

Compile time, step time, img/s, FLOPs (XLA's cost analysis), TFLOP/s, share of the step spent
making views, and peak device memory. LooC costs one query forward+backward plus n+1 key
forwards: about (n+1)/3 + 1 supervised steps (7/3 for n = 3); "x supervised" is the measured
ratio. A kind ``<base>+<objective>`` (objectives: ``OBJECTIVE_SETTINGS``, joined with "+") is
the base step with that objective on in its paper's setting; "x base" is its step time over the
base kind's, when both are in the run. E-SSL's rotated views are ``essl_size(S)`` px (96 at 224).
"""

from __future__ import annotations

import statistics
import time

import flax.linen as nn
import jax
import numpy as np

from leave_one_out import augment
from leave_one_out import config as config_lib
from leave_one_out import models
from leave_one_out import sharding
from leave_one_out import train
from leave_one_out.benchmarks import timing
from leave_one_out.benchmarks import views

SPACES = ("color", "rotation", "texture", "blur", "flip")
BASES = ("looc", "moco", "supervised")
# The objectives' settings in the benchmark's kinds (their papers' ImageNet-100 settings).
OBJECTIVE_SETTINGS = {
  "augself": {"weight": 0.5, "groups": ("crop", "color")},
  "essl": {"weight": 0.4},
  "cassle": {"enabled": True},
}


def essl_size(size: int) -> int:
  """E-SSL's rotated view beside S-px views: 96 px at 224 (its ImageNet ratio), at least 8."""
  return max(8, round(size * 96 / 224))


def parse_kind(kind: str) -> tuple[str, list[str]]:
  """``"moco+essl"`` -> ("moco", ["essl"]); ValueError naming an unknown part."""
  base, *extra = kind.split("+")
  unknown = [p for p in extra if p not in OBJECTIVE_SETTINGS] + ([] if base in BASES else [base])
  if unknown or (base == "supervised" and extra):
    raise ValueError(
      f"unknown step kind {kind!r}: a base out of {BASES} (objectives not with supervised), "
      f"then '+'-joined objectives out of {tuple(OBJECTIVE_SETTINGS)}"
    )
  return base, extra


# Dense bf16 peak TFLOP/s by device kind, for the utilisation column.
PEAK_TFLOPS = {
  "NVIDIA H100 80GB HBM3": 989.0,
  "NVIDIA H100": 989.0,
  "NVIDIA H200": 989.0,
  "NVIDIA A100-SXM4-80GB": 312.0,
  "NVIDIA A100-SXM4-40GB": 312.0,
  "TPU v4": 275.0,
  "TPU v5 lite": 197.0,
  "TPU v5e": 197.0,
  "TPU v5p": 459.0,
}


def step_config(
  kind: str, model: str, width: int, size: int, batch: int, precision: str, num_spaces: int
):
  """The training config a ``--what=step`` row times."""
  base, extra = parse_kind(kind)
  cfg = config_lib.default_config()
  cfg.data.image_size = int(round(size * 1.15))
  cfg.augment = views.views_config(size)
  cfg.augment.spaces = SPACES[:num_spaces] if base == "looc" else ()
  for name in extra:
    cfg.objectives[name].update(OBJECTIVE_SETTINGS[name])
  if "essl" in extra:
    cfg.objectives.essl.image_size = essl_size(size)
  cfg.model.architecture = model
  cfg.model.width = width
  cfg.model.dtype = precision
  cfg.loss.queue_size = 0  # in-batch negatives, as the figures in BENCHMARKS.md
  cfg.train.batch_size = batch
  cfg.train.num_steps = 1000
  return cfg


class _Supervised(nn.Module):
  """The same backbone with a linear classifier: the cost baseline of one forward+backward."""

  backbone: models.LooCModel
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x, train: bool = True):
    feature = self.backbone(x, train=train)["feature"]
    return train_dense(self.num_classes)(feature)


def train_dense(n):
  return nn.Dense(n, name="classifier")


def _supervised_step(cfg, mesh):
  """(jitted step, state, batch): one crop+flip view, cross-entropy, SGD."""
  import optax
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  model = _Supervised(models.build_model(cfg))
  size = cfg.augment.image_size
  variables = jax.jit(
    lambda: model.init(jax.random.key(0), jax.numpy.zeros((2, size, size, 3)), train=False)
  )()
  tx = optax.sgd(0.1, momentum=0.9)
  state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
  view_cfg = cfg.augment.copy_and_resolve_references()
  view_cfg.spaces = ()

  def step(state, batch, rng):
    params, stats, opt = state
    views, _ = augment.make_views(rng, batch["image"], view_cfg, batch["aspect"])

    def loss_fn(p):
      logits, upd = model.apply(
        {"params": p, "batch_stats": stats}, views[0], train=True, mutable=["batch_stats"]
      )
      labels = batch["label"]
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), upd

    (loss, upd), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    return (optax.apply_updates(params, updates), upd["batch_stats"], opt), loss

  rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P(sharding.DATA_AXIS))
  jitted = jax.jit(step, in_shardings=(rep, data, rep), out_shardings=(rep, rep), donate_argnums=0)
  return jitted, jax.device_put(state, rep)


def _batch(cfg, mesh, with_label=False):
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  b, s = cfg.train.batch_size, cfg.data.image_size
  rng = np.random.RandomState(0)
  batch = {
    "image": rng.randint(0, 256, (b, s, s, 3)).astype(np.uint8),
    "aspect": np.ones((b,), np.float32),
  }
  if with_label:
    batch["label"] = rng.randint(0, 1000, (b,)).astype(np.int32)
  return jax.device_put(batch, NamedSharding(mesh, P(sharding.DATA_AXIS)))


def measure_steps(kinds, model, width, size, batch, precision, num_spaces, repeats) -> list[dict]:
  """Times the jitted train step of each kind (same backbone, same run).

  Every kind is compiled and run once first; then ``repeats`` rounds time one step of every
  kind in turn, so that a load drifting over minutes (a shared machine) weighs on every kind
  alike. Every kind's state stays on the devices meanwhile.

  Returns one dict per kind: "kind", "views" (views per image), "compile_s", "step_s" (median
  of ``repeats`` steps), "flops" (per step, all devices; 0 if XLA gives no cost analysis),
  "views_s" (``make_views`` alone, for the same batch) and "peak_gib" (the process's peak
  device memory after its first step, None on CPU).
  """
  mesh = sharding.make_mesh()
  measured, runs = [], []
  for kind in kinds:
    cfg = step_config(kind, model, width, size, batch, precision, num_spaces)
    fn, state, args, views = _step_of(kind, cfg, mesh)
    t0 = time.perf_counter()
    compiled = fn.lower(state, *args(0)).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float((cost or {}).get("flops", 0.0)) * mesh.size  # per-device program
    state, out = compiled(state, *args(0))  # warm-up
    jax.block_until_ready(out)
    image, aspect = args(0)[0]["image"], args(0)[0]["aspect"]
    make = jax.jit(lambda r, x, a, c=cfg.augment: augment.make_views(r, x, c, a)[0])
    key = jax.random.key(1)
    view_s = timing.time_fn(
      lambda i: make(jax.random.fold_in(key, i), image, aspect), max(2, repeats // 2)
    )
    runs.append({"step": compiled, "state": state, "args": args, "times": []})
    measured.append(
      {
        "kind": kind,
        "views": views,
        "compile_s": compile_s,
        "flops": flops,
        "views_s": view_s,
        "peak_gib": timing.peak_memory_gib(),
      }
    )
  for i in range(repeats):
    for run in runs:
      start = time.perf_counter()
      run["state"], out = run["step"](run["state"], *run["args"](i + 1))
      jax.block_until_ready(out)
      run["times"].append(time.perf_counter() - start)
  for m, run in zip(measured, runs):
    m["step_s"] = statistics.median(run["times"])
  return measured


def _step_of(kind, cfg, mesh):
  """(jitted step, state, args(i) -> the step's arguments after the state, views label)."""
  if kind == "supervised":
    fn, state = _supervised_step(cfg, mesh)
    data, key = _batch(cfg, mesh, with_label=True), jax.random.key(1)
    return fn, state, lambda i: (data, jax.random.fold_in(key, i)), "1"
  compiled_programs = train.programs(cfg, mesh, steps_per_epoch=100)
  data, hp = _batch(cfg, mesh), compiled_programs.hyperparams
  views = str(augment.num_views(cfg.augment))
  if cfg.objectives.essl.weight:
    views += f" + 4 x {cfg.objectives.essl.image_size} px"
  return (
    compiled_programs.train_step,
    compiled_programs.new_state(cfg.seed),
    lambda i: (data, hp),
    views,
  )


def format_steps(measured: list[dict], model, width, size, batch, precision, peak_tflops) -> str:
  """``measure_steps``'s results as a Markdown table ("x supervised", "x base": step time
  ratios)."""
  num_devices = jax.device_count()
  kind0 = jax.devices()[0].device_kind
  peak = peak_tflops or PEAK_TFLOPS.get(kind0, 0.0)
  rows = [
    f"{model} (width {width}) at {size} px, global batch {batch}, {precision}, "
    f"{num_devices} x {kind0}",
    "",
    "| step | views | compile s | step ms | img/s | img/s/device | x supervised | x base | "
    "TFLOP/step | TFLOP/s | of peak | views ms (share) | peak GiB |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  times = {m["kind"]: m["step_s"] for m in measured}
  supervised = times.get("supervised")
  for m in measured:
    seconds = m["step_s"]
    ratio = f"{seconds / supervised:.2f}" if supervised else "-"
    base = times.get(parse_kind(m["kind"])[0]) if "+" in m["kind"] else None
    base_ratio = f"{seconds / base:.2f}" if base else "-"
    tflops = m["flops"] / seconds / 1e12
    share = f"{1e3 * m['views_s']:.0f} ({100 * m['views_s'] / seconds:.0f}%)"
    memory = f"{m['peak_gib']:.1f}" if m["peak_gib"] else "n/a"
    rows.append(
      f"| {m['kind']} | {m['views']} | {m['compile_s']:.1f} | {1e3 * seconds:.1f} | "
      f"{batch / seconds:,.0f} | {batch / seconds / num_devices:,.0f} | {ratio} | {base_ratio} | "
      f"{m['flops'] / 1e12:.4g} | {tflops:.2f} | "
      f"{f'{100 * tflops / peak:.0f}%' if peak else 'n/a'} | {share} | {memory} |"
    )
  return "\n".join(rows)


def bench_step(
  kinds, model, width, size, batch, precision, num_spaces, repeats, peak_tflops
) -> str:
  """The jitted train step: compile time, step time, img/s, TFLOP/s and peak memory.

  LooC's extra cost over a supervised step is n+1 key forwards plus one query forward+backward
  (about (n+1)/3 + 1 supervised steps: 7/3 for n = 3); "x supervised" shows the measured ratio.
  """
  measured = measure_steps(kinds, model, width, size, batch, precision, num_spaces, repeats)
  return format_steps(measured, model, width, size, batch, precision, peak_tflops)
