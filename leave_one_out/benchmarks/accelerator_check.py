r"""One prepared accelerator check: everything a fresh GPU (or TPU) host should show, one report.

  launch/gpu.sh check [--wheels DIR] [FLAGS...]        # on the GPU host, from a checkout
  ALLOW_CPU=1 launch/gpu.sh check                      # the same checks, tiny, on a CPU
  python -m leave_one_out.benchmarks --what=accelerator_check --report=/tmp/check.md [--size=full|tiny]

Sections of the Markdown report (``--report``), in the order they run:

1. Devices: every device with its kind and memory, the versions of jax, jaxlib and flax.
2. Step tests that need the device: the train step's loss in bfloat16 within 2% of float32
   (float32 with full-precision matmuls, not TF32), and the loss and query gradient of
   ``losses.sharded_looc_loss`` over every device equal to ``losses.looc_loss`` on one.
3. Train step benchmark (``benchmarks.step.measure_steps``): LooC (n = 3, five views), MoCo (n = 0)
   and supervised, ResNet-50 at 224 px, global batch 256, bfloat16, against the goal: LooC at
   >= 1,200 img/s per device, and a LooC step at most 1.5 x 7/3 = 3.5 supervised steps.
4. View generation benchmark (``benchmarks.views.bench_views``) at 224 px.
5. 50 steps of configs/looc_in100_r50.py (LooC, queue, shuffle-BN) on the embedded synthetic
   dataset at 256 px with 224-px views: throughput, compile time, losses, peak memory.

Nothing is downloaded (the data is generated). With ``--size=tiny`` (the default on a host
without an accelerator, allowed only with ``ALLOW_CPU=1`` or ``--allow_cpu``) every section
runs at ResNet-10 width 8, 32 px, batch 16 and a few steps, and the goals are not judged. Each
section's failure is written into the report and the rest still runs; the exit status is 0
only when every section passed. The full size is designed to finish in well under 8 minutes
on one H100-class GPU (most of it is compiling five programs; a persistent compilation cache,
``--compilation_cache_dir``, makes a rerun faster).
"""

from __future__ import annotations

import datetime
import functools
import gc
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import config as config_lib
from leave_one_out import data as data_lib
from leave_one_out import losses
from leave_one_out import models
from leave_one_out import sharding as sharding_lib
from leave_one_out import train
from leave_one_out.benchmarks import step as step_benchmark
from leave_one_out.benchmarks import timing
from leave_one_out.benchmarks import views as views_benchmark
from leave_one_out.run import logs
from leave_one_out.run import loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECTIONS = ("devices", "step_tests", "step_benchmark", "views_benchmark", "imagenet100_steps")
TITLES = {
  "devices": "Devices",
  "step_tests": "Step tests on the device",
  "step_benchmark": "Train step benchmark",
  "views_benchmark": "View generation benchmark",
  "imagenet100_steps": "ImageNet-100 recipe on synthetic images",
}
# The goal for LooC ResNet-50 at 224 px, n = 3, bfloat16, per H100-class device.
GOAL_IMG_PER_S = 1200.0
GOAL_RATIO = 1.5 * 7 / 3  # a LooC step vs a supervised step of the same backbone

# Each size: the step benchmark's model, width, view side, batch, repeats; the step tests'
# model, width, side, batch; the recipe run's steps, source side and view side.
SIZES = {
  "full": dict(
    model="resnet50",
    width=64,
    size=224,
    batch=256,
    repeats=5,
    views_repeats=4,
    test_model="resnet18",
    test_width=32,
    test_size=64,
    test_batch=32,
    recipe_steps=50,
    recipe_source=256,
    recipe_size=224,
    recipe_examples=512,
  ),
  "tiny": dict(
    model="resnet10",
    width=8,
    size=32,
    batch=16,
    repeats=2,
    views_repeats=2,
    test_model="resnet10",
    test_width=8,
    test_size=32,
    test_batch=16,
    recipe_steps=4,
    recipe_source=40,
    recipe_size=32,
    recipe_examples=64,
  ),
}


class Report:
  """Sections of Markdown plus a status per section."""

  def __init__(self, title: str):
    self.lines = [f"# {title}", ""]
    self.status: dict[str, str] = {}

  def section(self, name: str, status: str, body: str, seconds: float):
    self.status[name] = status
    self.lines += [
      f"## {TITLES[name]}",
      "",
      f"Status: **{status}** ({seconds:.0f} s)",
      "",
      body.rstrip(),
      "",
    ]

  def text(self, summary: list[str]) -> str:
    head, rest = self.lines[:2], self.lines[2:]
    return "\n".join(head + summary + [""] + rest) + "\n"


def _versions() -> str:
  import flax  # pylint: disable=import-outside-toplevel
  import jaxlib  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel

  return (
    f"python {platform.python_version()}, jax {jax.__version__}, jaxlib "
    f"{jaxlib.__version__}, flax {flax.__version__}, optax {optax.__version__}"
  )


def _git_commit() -> str:
  try:
    out = subprocess.run(
      ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
      capture_output=True,
      text=True,
      timeout=10,
    )
    dirty = subprocess.run(
      ["git", "-C", ROOT, "status", "--porcelain"], capture_output=True, text=True, timeout=10
    ).stdout.strip()
    return out.stdout.strip() + (" (with local changes)" if dirty else "") or "unknown"
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def has_accelerator() -> bool:
  return jax.default_backend() in ("gpu", "cuda", "rocm", "tpu")


# ------------------------------------------------------------------------------ sections


def check_devices(sizes) -> tuple[str, str]:
  del sizes
  rows = ["| id | platform | kind | process | memory GiB |", "|---|---|---|---|---|"]
  for d in jax.devices():
    stats = d.memory_stats() or {}
    limit = stats.get("bytes_limit")
    rows.append(
      f"| {d.id} | {d.platform} | {d.device_kind} | {d.process_index} | "
      f"{f'{limit / 2**30:.1f}' if limit else 'n/a'} |"
    )
  body = (
    f"Backend {jax.default_backend()}, {jax.device_count()} device(s), "
    f"{jax.process_count()} process(es). {_versions()}.\n\n" + "\n".join(rows)
  )
  print(body, flush=True)
  return "PASS", body


def _step_config(sizes, precision: str):
  """A small LooC config (colour and rotation spaces) for the step tests."""
  c = config_lib.default_config()
  c.data.name = "synthetic"
  c.data.image_size = int(round(sizes["test_size"] * 1.25))
  c.data.num_train = sizes["test_batch"] * 2
  c.augment.image_size = sizes["test_size"]
  c.model.architecture = sizes["test_model"]
  c.model.width = sizes["test_width"]
  c.model.dtype = precision
  c.loss.queue_size = 0  # in-batch negatives: one global BatchNorm, like the reference
  c.train.batch_size = sizes["test_batch"]
  c.train.num_steps = 2
  c.train.base_lr = 0.1
  return c


def _losses_of_steps(cfg, mesh, steps: int) -> list[float]:
  source = data_lib.create_train_source(cfg)
  compiled = train.programs(cfg, mesh, source.steps_per_epoch)
  state, step = compiled.new_state(cfg.seed), compiled.step
  sharding = NamedSharding(mesh, P(sharding_lib.DATA_AXIS))
  out = []
  for i in range(steps):
    batch = jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), source.batch(i)
    )
    state, metrics = step(state, batch)
    out.append(float(jax.device_get(metrics["loss"])))
  return out


def _normalised(rng, shape):
  x = jax.random.normal(rng, shape)
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def check_step_tests(sizes) -> tuple[str, str]:
  """bfloat16 vs float32 train-step loss; sharded vs reference LooC loss and gradient."""
  mesh = sharding_lib.make_mesh()
  rows = ["| check | result | detail |", "|---|---|---|"]
  ok = True
  # 1. bfloat16 compute changes the loss by < 2% (the float32 run uses full-precision matmuls).
  with jax.default_matmul_precision("highest"):
    l32 = _losses_of_steps(_step_config(sizes, "float32"), mesh, 2)
  l16 = _losses_of_steps(_step_config(sizes, "bfloat16"), mesh, 2)
  rel = max(abs(a - b) / abs(a) for a, b in zip(l32, l16))
  passed = rel < 2e-2 and all(np.isfinite(l32 + l16))
  ok &= passed
  rows.append(
    f"| train step loss, bfloat16 vs float32 ({sizes['test_model']}, "
    f"{sizes['test_size']} px, batch {sizes['test_batch']}, 2 steps) | "
    f"{'PASS' if passed else 'FAIL'} | float32 {', '.join(f'{x:.4f}' for x in l32)}; "
    f"bfloat16 {', '.join(f'{x:.4f}' for x in l16)}; max rel. diff {100 * rel:.2f}% "
    f"(limit 2%) |"
  )
  # 2. The loss sharded over every device equals the one-device reference.
  n, batch, dim = 3, 4 * mesh.size, 16
  rq, rk, rqueue = jax.random.split(jax.random.PRNGKey(5), 3)
  q, k = _normalised(rq, (batch, n + 1, dim)), _normalised(rk, (n + 1, batch, n + 1, dim))
  queue = _normalised(rqueue, (n + 1, 6, dim))
  one = Mesh(np.asarray(jax.devices()[:1]), (sharding_lib.DATA_AXIS,))
  with jax.default_matmul_precision("highest"):
    ref = lambda q: losses.looc_loss(q, k, temperature=0.2, queue=queue)[0]
    q_one = jax.device_put(q, NamedSharding(one, P()))
    want, g_want = jax.device_get(jax.jit(jax.value_and_grad(ref))(q_one))
    q_s = jax.device_put(q, NamedSharding(mesh, P(sharding_lib.DATA_AXIS)))
    k_s = jax.device_put(k, NamedSharding(mesh, P(None, sharding_lib.DATA_AXIS)))
    sharded = lambda q: losses.sharded_looc_loss(
      q, k_s, mesh=mesh, axis=sharding_lib.DATA_AXIS, temperature=0.2, queue=queue
    )[0]
    got, g_got = jax.device_get(jax.jit(jax.value_and_grad(sharded))(q_s))
  loss_rel = abs(float(got) - float(want)) / abs(float(want))
  grad_err = float(np.max(np.abs(g_got - g_want)) / np.max(np.abs(g_want)))
  passed = loss_rel < 1e-5 and grad_err < 1e-4
  ok &= passed
  rows.append(
    f"| sharded LooC loss and query gradient over {mesh.size} device(s) vs one "
    f"device (n = 3, batch {batch}, queue) | {'PASS' if passed else 'FAIL'} | loss "
    f"{float(got):.6f} vs {float(want):.6f} (rel. diff {loss_rel:.1e}, limit 1e-5); "
    f"gradient max diff {grad_err:.1e} of its max (limit 1e-4) |"
  )
  body = "\n".join(rows)
  print(body, flush=True)
  return ("PASS" if ok else "FAIL"), body


def check_step_benchmark(sizes) -> tuple[str, str]:
  args = (sizes["model"], sizes["width"], sizes["size"], sizes["batch"], "bfloat16")
  measured = step_benchmark.measure_steps(
    ["looc", "moco", "supervised"], *args, num_spaces=3, repeats=sizes["repeats"]
  )
  table = step_benchmark.format_steps(measured, *args, peak_tflops=0.0)
  by_kind = {m["kind"]: m["step_s"] for m in measured}
  per_device = sizes["batch"] / by_kind["looc"] / jax.device_count()
  ratio = by_kind["looc"] / by_kind["supervised"]
  command = (
    f"python -m leave_one_out.benchmarks --what=step --model={sizes['model']} "
    f"--width={sizes['width']} --step_size={sizes['size']} "
    f"--batch_size={sizes['batch']} --precision=bfloat16 --num_spaces=3 "
    f"--repeats={sizes['repeats']}"
  )
  lines = [f"`{command}`", "", table, ""]
  judged = has_accelerator() and sizes is SIZES["full"]
  speed_ok = per_device >= GOAL_IMG_PER_S
  ratio_ok = ratio <= GOAL_RATIO
  verdict = lambda good: ("met" if good else "NOT met") if judged else "not judged (tiny size)"
  lines += [
    f"- LooC throughput: {per_device:,.0f} img/s per device; goal >= "
    f"{GOAL_IMG_PER_S:,.0f}: {verdict(speed_ok)}.",
    f"- LooC step / supervised step: {ratio:.2f}; goal <= 1.5 x 7/3 = {GOAL_RATIO:.2f}: "
    f"{verdict(ratio_ok)}.",
  ]
  body = "\n".join(lines)
  print(body, flush=True)
  status = "PASS" if not judged or (speed_ok and ratio_ok) else "FAIL"
  return status, body


def check_views_benchmark(sizes) -> tuple[str, str]:
  command = (
    f"python -m leave_one_out.benchmarks --what=views --batch_size={sizes['batch']} "
    f"--sizes={sizes['size']} --repeats={sizes['views_repeats']}"
  )
  table = views_benchmark.bench_views(sizes["batch"], [sizes["size"]], 1.15, sizes["views_repeats"])
  body = f"`{command}`\n\n{table}"
  print(body, flush=True)
  return "PASS", body


def recipe_config(sizes):
  """configs/looc_in100_r50.py on the synthetic dataset (no download), ``recipe_steps`` long."""
  c = config_lib.load_file(os.path.join(ROOT, "configs", "looc_in100_r50.py"))
  c.data.name = "synthetic"
  c.data.image_size = sizes["recipe_source"]
  c.data.num_train = sizes["recipe_examples"]
  c.augment.image_size = sizes["recipe_size"]
  c.train.num_steps = sizes["recipe_steps"]
  c.log_every_steps = max(1, sizes["recipe_steps"] // 5)
  c.checkpoint_every_steps = 10 * sizes["recipe_steps"]  # one checkpoint, at the end
  c.keep_every_steps = 0
  c.eval_every_steps = 0
  if sizes is SIZES["tiny"]:
    c.model.architecture = sizes["model"]
    c.model.width = sizes["width"]
    c.model.head_hidden = 32
    c.model.dtype = "float32"
    c.train.batch_size = sizes["batch"]
    c.model.bn_groups = 4
    c.loss.queue_size = 4 * sizes["batch"]
  return c


def check_imagenet100_steps(sizes, workdir: str = "") -> tuple[str, str]:
  cfg = recipe_config(sizes)
  workdir = workdir or tempfile.mkdtemp(prefix="looc_check_")
  try:
    t0 = time.perf_counter()
    summary = loop.pretrain(cfg, workdir, workdir_mode="overwrite")
    wall = time.perf_counter() - t0
    logged = logs.read_metrics(workdir)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  mode = models.key_bn_mode(cfg.model, cfg.loss.queue_size, jax.device_count())
  rows = [
    "| step | loss | img/s | img/s/device | lr | non-finite | peak GiB |",
    "|---|---|---|---|---|---|---|",
  ]
  for m in logged:
    if "loss" not in m:
      continue
    peak = m.get("peak_memory_gib")
    speed = (
      f"{m['img_per_s']:,.0f} | {m['img_per_s_per_device']:,.0f}" if m["img_per_s"] else "- | -"
    )  # the first interval is the compiling step alone
    rows.append(
      f"| {m['step']} | {m['loss']:.4f} | {speed} | {m['lr']:.4f} | "
      f"{int(m['nonfinite'])} | "
      f"{f'{peak:.1f}' if peak else 'n/a'} |"
    )
  first = logged[0]
  ok = summary["step"] == cfg.train.num_steps and all(
    np.isfinite(m["loss"]) and not m["nonfinite"] for m in logged if "loss" in m
  )
  body = "\n".join(
    [
      f"configs/looc_in100_r50.py with data.name=synthetic, data.image_size="
      f"{cfg.data.image_size}, augment.image_size={cfg.augment.image_size}, train.num_steps="
      f"{cfg.train.num_steps}: {cfg.model.architecture}, {cfg.model.dtype}, spaces "
      f"{', '.join(cfg.augment.spaces)}, batch {cfg.train.batch_size}, queue "
      f"{cfg.loss.queue_size}, key BatchNorm {mode} ({models.bn_groups(cfg.model, jax.device_count())}"
      f" groups), weight decay on {cfg.train.weight_decay_mask}.",
      "",
      f"{summary['step']} steps in {wall:.0f} s, first step (compilation) "
      f"{first.get('compile_s', float('nan')):.1f} s.",
      "",
      *rows,
    ]
  )
  print(body, flush=True)
  return ("PASS" if ok else "FAIL"), body


CHECKS = {
  "devices": check_devices,
  "step_tests": check_step_tests,
  "step_benchmark": check_step_benchmark,
  "views_benchmark": check_views_benchmark,
  "imagenet100_steps": check_imagenet100_steps,
}


def run(sections, size: str, report_path: str, *, workdir: str = "") -> int:
  """Runs the sections, writes the report after each one; returns the exit status.

  ``workdir``: scratch directory of the recipe run (deleted afterwards; "" = a temporary one).
  """
  checks = dict(
    CHECKS, imagenet100_steps=functools.partial(CHECKS["imagenet100_steps"], workdir=workdir)
  )
  sizes = SIZES[size]
  start = time.perf_counter()
  report = Report("Accelerator check")
  when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  header = [
    f"{when}; size {size}; commit {_git_commit()}.",
    f"Machine: {timing.machine_description()}.",
    f"Command: `python -m leave_one_out.benchmarks --what=accelerator_check {' '.join(sys.argv[1:])}`.",
  ]
  for name in sections:
    print(f"\n=== {TITLES[name]} ===", flush=True)
    t0 = time.perf_counter()
    try:
      status, body = checks[name](sizes)
    except Exception:  # pylint: disable=broad-except
      status, body = "ERROR", f"```\n{traceback.format_exc()}```"
      print(body, flush=True)
    report.section(name, status, body, time.perf_counter() - t0)
    _write(report_path, report, header, start)
  return 0 if all(s == "PASS" for s in report.status.values()) else 1


def _write(path, report, header, start):
  summary = (
    header
    + ["", "| section | status |", "|---|---|"]
    + [f"| {TITLES[n]} | {s} |" for n, s in report.status.items()]
    + ["", f"Total: {time.perf_counter() - start:.0f} s."]
  )
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(report.text(summary))


def define_flags() -> None:
  flags.DEFINE_string("report", "accelerator_check.md", "The Markdown report to write.")
  flags.DEFINE_enum(
    "size",
    None,
    list(SIZES),
    "full (ResNet-50, 224 px, batch 256) or tiny (ResNet-10 width 8, 32 px, "
    "batch 16); default: full on an accelerator, tiny on a CPU.",
  )
  flags.DEFINE_bool(
    "allow_cpu",
    os.environ.get("ALLOW_CPU", "0") == "1",
    "Run on a host without GPU/TPU (default: $ALLOW_CPU == 1).",
  )
  flags.DEFINE_list("sections", list(SECTIONS), f"Sections to run, of {SECTIONS}.")
  flags.DEFINE_string(
    "workdir",
    "",
    "Scratch directory of the recipe run (deleted afterwards); "
    "default: a fresh temporary directory.",
  )
  flags.DEFINE_string("compilation_cache_dir", None, "Persistent XLA compilation cache directory.")


def main(argv):
  del argv
  gc.freeze()  # the modules imported so far live as long as the process: not garbage
  f = flags.FLAGS
  unknown = [s for s in f.sections if s not in SECTIONS]
  if unknown:
    raise app.UsageError(f"unknown --sections {unknown}; choose from {SECTIONS}")
  if f.compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(f.compilation_cache_dir))
  if not has_accelerator() and not f.allow_cpu:
    print(
      f"No GPU or TPU found (backend {jax.default_backend()}): set ALLOW_CPU=1 (or "
      "--allow_cpu) to run the checks at a tiny size on the CPU.",
      file=sys.stderr,
    )
    sys.exit(2)
  size = f.size or ("full" if has_accelerator() else "tiny")
  status = run(f.sections, size, f.report, workdir=f.workdir)
  print(f"\nReport: {os.path.abspath(f.report)}", flush=True)
  sys.exit(status)
