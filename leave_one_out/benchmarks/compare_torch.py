"""The project's LooC train step against a PyTorch one, side by side on the same CPU.

  python -m leave_one_out.benchmarks --what=torch --model=resnet18 --width=64 --step_size=64 \
      --batch_size=64 --num_spaces=2 --repeats=3 [--variants=jax,jax-xla-defaults,torch]

Both sides run the same LooC step (ResNet small stem, n spaces of colour then rotation, q + n+1
keys per image, EMA key encoder, ``losses.looc_loss``'s defaults with in-batch negatives, SGD):
the project's ``train.train_step`` (views rendered on device inside the jitted step) and
``torch_reference.LooCStep`` (views made on the host with PIL, then the step). The variants are
timed interleaved in one process, each repeat in a rotated order, so that the load of a shared
machine hits all of them alike:

- end to end: JAX ``train_step`` on uint8 source images; PyTorch host views + step;
- views: JAX ``augment.make_views`` jitted alone; PyTorch ``torch_reference.make_views``;
- step: PyTorch's step on ready views; for JAX, end to end minus views (the views run inside
  the one jitted step and cannot be timed apart there).

Variants: ``jax`` (the project: ``sharding.train_step_options``), ``jax-xla-defaults`` (the
same step compiled with XLA's default options), ``jax-bf16`` (``model.dtype = bfloat16``),
``torch`` (float32, channels-last memory), ``torch-nchw`` (float32, NCHW memory), ``torch-bf16``
(``torch.autocast`` bfloat16). "x torch" is img/s end to end over the ``torch`` row's.
"""

from __future__ import annotations

import functools
import os
import statistics
import time

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import augment
from leave_one_out import config as config_lib
from leave_one_out import resnet
from leave_one_out import sharding
from leave_one_out import train
from leave_one_out.benchmarks import timing

VARIANTS = ("jax", "jax-xla-defaults", "jax-bf16", "torch", "torch-nchw", "torch-bf16")
SPACES = ("color", "rotation")  # those torch_reference renders with their own space


def jax_config(model: str, width: int, size: int, batch: int, precision: str, num_spaces: int):
  """The project's config of the compared step: MoCo v2 views plus rotation, spaces
  ``SPACES[:num_spaces]``, in-batch negatives, SGD (source images 1.15x the view side)."""
  cfg = config_lib.default_config()
  cfg.data.image_size = int(round(size * 1.15))
  cfg.augment.image_size = size
  cfg.augment.spaces = SPACES[:num_spaces]
  cfg.model.architecture = model
  cfg.model.width = width
  cfg.model.stem = "small"
  cfg.model.dtype = precision
  cfg.loss.queue_size = 0
  cfg.train.batch_size = batch
  cfg.train.num_steps = 1000
  return cfg


def _jax_step(cfg, mesh, options):
  """(jitted ``train.train_step`` compiled with ``options``, a fresh state, its hp)."""
  compiled = train.programs(cfg, mesh, steps_per_epoch=100)
  state = compiled.new_state(cfg.seed)
  replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P(sharding.DATA_AXIS))
  step = functools.partial(train.train_step, cfg=cfg, model=compiled.model, mesh=mesh)
  jitted = jax.jit(
    step,
    in_shardings=(replicated, data, replicated),
    out_shardings=(replicated, replicated),
    donate_argnums=0,
    compiler_options=options,
  )
  return jitted, state, jax.device_put(compiled.hyperparams, replicated)


def _check(variants, num_spaces):
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise ValueError(f"unknown variants {unknown}; choose from {VARIANTS}")
  if not 0 <= num_spaces <= len(SPACES):
    raise ValueError(
      f"the PyTorch step renders the spaces {SPACES}: num_spaces must be 0 to "
      f"{len(SPACES)}, got {num_spaces}"
    )


def measure(variants, model, width, size, batch, num_spaces, repeats, seed=0) -> list[dict]:
  """Times every variant, interleaved; one dict per variant.

  Keys: "variant", "precision", "compile_s" (JAX; None for PyTorch), "end_to_end_s", "views_s",
  "step_s" (medians over ``repeats``, after one warm-up each), "loss" (the last step's).
  """
  _check(variants, num_spaces)
  if any(v.startswith("torch") for v in variants):
    from leave_one_out.benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  mesh = sharding.make_mesh()
  source = int(round(size * 1.15))
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (batch, source, source, 3), dtype=np.uint8)
  batch_sharding = NamedSharding(mesh, P(sharding.DATA_AXIS))
  data = jax.device_put({"image": images, "aspect": np.ones((batch,), np.float32)}, batch_sharding)
  runners, results = {}, {}
  for variant in variants:
    precision = "bfloat16" if variant.endswith("bf16") else "float32"
    results[variant] = {
      "variant": variant,
      "precision": precision,
      "compile_s": None,
      "end_to_end": [],
      "views": [],
      "step": [],
      "loss": None,
    }
    if variant.startswith("jax"):
      cfg = jax_config(model, width, size, batch, precision, num_spaces)
      options = None if variant == "jax-xla-defaults" else sharding.train_step_options(mesh)
      jitted, state, hp = _jax_step(cfg, mesh, options)
      start = time.perf_counter()
      compiled = jitted.lower(state, data, hp).compile()
      results[variant]["compile_s"] = time.perf_counter() - start
      runners[variant] = _jax_runner(
        lambda s, d, c=compiled, h=hp: c(s, d, h), state, data, cfg, results[variant]
      )
    else:
      ref = torch_reference.LooCStep(
        model,
        width,
        num_spaces + 1,
        lr=0.03 * batch / 256,
        precision=precision,
        channels_last=variant != "torch-nchw",
        seed=seed,
      )
      runners[variant] = _torch_runner(
        ref, images, size, SPACES[:num_spaces], rng, torch_reference, results[variant]
      )
  for run in runners.values():  # warm-up: compiled programs, oneDNN primitives, caches
    run(record=False)
  for r in range(repeats):
    order = list(variants[r % len(variants) :]) + list(variants[: r % len(variants)])
    for variant in order:
      runners[variant](record=True)
  out = []
  for variant in variants:
    res = results[variant]
    e2e, views = statistics.median(res["end_to_end"]), statistics.median(res["views"])
    step = statistics.median(res["step"]) if res["step"] else e2e - views
    out.append(
      {
        "variant": variant,
        "precision": res["precision"],
        "compile_s": res["compile_s"],
        "end_to_end_s": e2e,
        "views_s": views,
        "step_s": step,
        "loss": res["loss"],
      }
    )
  return out


def _jax_runner(compiled, state, data, cfg, res):
  """One repeat: the whole jitted step (end to end), then ``make_views`` alone (views)."""
  holder = {"state": state, "i": 0}
  make = jax.jit(lambda r, x, a: augment.make_views(r, x, cfg.augment, a)[0])
  key = jax.random.key(1)

  def run(record: bool):
    start = time.perf_counter()
    holder["state"], metrics = compiled(holder["state"], data)
    jax.block_until_ready(metrics)
    e2e = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(make(jax.random.fold_in(key, holder["i"]), data["image"], data["aspect"]))
    views = time.perf_counter() - start
    holder["i"] += 1
    res["loss"] = float(metrics["loss"])
    if record:
      res["end_to_end"].append(e2e)
      res["views"].append(views)

  return run


def _torch_runner(ref, images, size, spaces, rng, torch_reference, res):
  """One repeat: host views, then the step on them (end to end = their sum)."""

  def run(record: bool):
    start = time.perf_counter()
    views = torch_reference.make_views(rng, images, size, spaces, channels_last=ref.channels_last)
    middle = time.perf_counter()
    res["loss"] = ref.step(views)
    end = time.perf_counter()
    if record:
      res["views"].append(middle - start)
      res["step"].append(end - middle)
      res["end_to_end"].append(end - start)

  return run


def format_table(measured: list[dict], model, width, size, batch, num_spaces) -> str:
  """``measure``'s results as a Markdown table."""
  torch_threads = ""
  if any(m["variant"].startswith("torch") for m in measured):
    import torch  # pylint: disable=import-outside-toplevel

    torch_threads = f", torch {torch.__version__} with {torch.get_num_threads()} threads"
  reference = {m["variant"]: m["end_to_end_s"] for m in measured}.get("torch")
  rows = [
    f"LooC {model} (width {width}, small stem) at {size} px, batch {batch}, "
    f"n = {num_spaces} ({num_spaces + 2} views per image), {os.cpu_count()} CPU "
    f"cores{torch_threads}",
    "",
    "| variant | precision | compile s | end to end ms | img/s end to end | x torch | "
    "step ms | views ms (share) | loss |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for m in measured:
    e2e = m["end_to_end_s"]
    compile_s = f"{m['compile_s']:.0f}" if m["compile_s"] is not None else "-"
    ratio = f"{reference / e2e:.2f}" if reference else "-"
    rows.append(
      f"| {m['variant']} | {m['precision']} | {compile_s} | {1e3 * e2e:,.0f} | "
      f"{batch / e2e:.2f} | {ratio} | {1e3 * m['step_s']:,.0f} | "
      f"{1e3 * m['views_s']:,.0f} ({100 * m['views_s'] / e2e:.0f}%) | {m['loss']:.3f} |"
    )
  return "\n".join(rows)


def bench_torch(variants, model, width, size, batch, num_spaces, repeats) -> str:
  """The side-by-side table (the machine's load average after the run on its last line)."""
  measured = measure(variants, model, width, size, batch, num_spaces, repeats)
  return (
    format_table(measured, model, width, size, batch, num_spaces)
    + f"\n\nAfter the run: {timing.machine_description()}"
  )


# ------------------------------------------------------------- the convolutions of one step

CONV_KINDS = ("forward", "input gradient", "weight gradient")
CONV_BACKENDS = ("jax-xla-defaults", "jax", "torch")


def resnet_convolutions(model: str, width: int, size: int) -> list[dict]:
  """The convolutions of a small-stem basic-block ResNet: one dict each with "cin", "cout",
  "kernel", "stride", "size" (input side) and "stem" (the first: no input gradient)."""
  block, stages = resnet.ARCHITECTURES[model]
  if block != "basic":
    raise ValueError(f"the PyTorch step builds basic-block ResNets; {model!r} has {block} blocks")
  convs = [dict(cin=3, cout=width, kernel=3, stride=1, size=size, stem=True)]
  cin, side = width, size
  for i, blocks in enumerate(stages):
    features = width * 2**i
    for j in range(blocks):
      stride = 2 if i > 0 and j == 0 else 1
      convs.append(dict(cin=cin, cout=features, kernel=3, stride=stride, size=side, stem=False))
      if stride != 1 or cin != features:
        convs.append(dict(cin=cin, cout=features, kernel=1, stride=stride, size=side, stem=False))
      side //= stride
      convs.append(dict(cin=features, cout=features, kernel=3, stride=1, size=side, stem=False))
      cin = features
  return convs


def _conv_flops(c: dict, batch: int) -> float:
  out = c["size"] // c["stride"]
  return 2.0 * batch * out * out * c["kernel"] ** 2 * c["cin"] * c["cout"]


def _jax_conv_calls(c: dict, batch: int, options):
  """{kind: zero-argument call} of one convolution's forward, input and weight gradient."""
  rng = np.random.default_rng(0)
  pad = c["kernel"] // 2
  x = jax.numpy.asarray(rng.normal(size=(batch, c["size"], c["size"], c["cin"])), "float32")
  w = jax.numpy.asarray(rng.normal(size=(c["kernel"], c["kernel"], c["cin"], c["cout"])), "float32")
  conv = lambda x, w: jax.lax.conv_general_dilated(
    x, w, (c["stride"],) * 2, ((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  dy = jax.numpy.ones(jax.eval_shape(conv, x, w).shape, "float32")
  fns = {
    "forward": (conv, (x, w)),
    "input gradient": (lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0], (x, w, dy)),
    "weight gradient": (lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0], (x, w, dy)),
  }
  calls = {}
  for kind, (fn, args) in fns.items():
    compiled = jax.jit(fn, compiler_options=options).lower(*args).compile()
    calls[kind] = functools.partial(lambda f, a: jax.block_until_ready(f(*a)), compiled, args)
  return calls


def _torch_conv_calls(c: dict, batch: int):
  import torch  # pylint: disable=import-outside-toplevel

  last = torch.channels_last
  x = torch.randn(batch, c["cin"], c["size"], c["size"]).contiguous(memory_format=last)
  w = torch.randn(c["cout"], c["cin"], c["kernel"], c["kernel"]).contiguous(memory_format=last)
  stride, pad = [c["stride"]] * 2, [c["kernel"] // 2] * 2
  dy = torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)
  dy = torch.ones_like(dy).contiguous(memory_format=last)
  backward = lambda mask: torch.ops.aten.convolution_backward(
    dy, x, w, None, stride, pad, [1, 1], False, [0, 0], 1, mask
  )

  def forward():
    with torch.no_grad():
      return torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)

  return {
    "forward": forward,
    "input gradient": lambda: backward([True, False, False]),
    "weight gradient": lambda: backward([False, True, False]),
  }


def measure_convolutions(model, width, size, batch, num_spaces, repeats) -> list[dict]:
  """Times the convolutions of one LooC step alone, per kind, for each backend, interleaved.

  A step runs every convolution forward for the query and the n+1 keys (n+2 batches), and
  the input and weight gradients for the query (no input gradient for the stem). Each
  convolution is timed at ``batch`` (the median of ``repeats``, after a warm-up), the forward
  multiplied by n+2. Returns one dict per kind: "kind", "flops", and the seconds per backend.
  """
  convs = resnet_convolutions(model, width, size)
  calls = {}
  for backend in CONV_BACKENDS:
    if backend == "torch":
      # Imported for its error, which names the install if torch is missing.
      # pylint: disable-next=import-outside-toplevel,unused-import
      from leave_one_out.benchmarks import torch_reference  # noqa: F401

      calls[backend] = [_torch_conv_calls(c, batch) for c in convs]
    else:
      options = (
        None if backend == "jax-xla-defaults" else sharding.train_step_options(sharding.make_mesh())
      )
      calls[backend] = [_jax_conv_calls(c, batch, options) for c in convs]
  times = {(b, i, k): [] for b in CONV_BACKENDS for i in range(len(convs)) for k in CONV_KINDS}
  for backend in CONV_BACKENDS:  # warm-up
    for per_conv in calls[backend]:
      for call in per_conv.values():
        call()
  for r in range(repeats):
    order = CONV_BACKENDS[r % 3 :] + CONV_BACKENDS[: r % 3]
    for backend in order:
      for i, per_conv in enumerate(calls[backend]):
        for kind, call in per_conv.items():
          start = time.perf_counter()
          call()
          times[(backend, i, kind)].append(time.perf_counter() - start)
  multiplier = {"forward": num_spaces + 2, "input gradient": 1, "weight gradient": 1}
  out = []
  for kind in CONV_KINDS:
    used = [i for i, c in enumerate(convs) if not (kind == "input gradient" and c["stem"])]
    row = {
      "kind": kind,
      "flops": multiplier[kind] * sum(_conv_flops(convs[i], batch) for i in used),
    }
    for backend in CONV_BACKENDS:
      row[backend] = multiplier[kind] * sum(
        statistics.median(times[(backend, i, kind)]) for i in used
      )
    out.append(row)
  return out


def format_convolutions(rows: list[dict], model, width, size, batch, num_spaces) -> str:
  """``measure_convolutions``'s rows, and their total, as a Markdown table."""
  total = {"kind": "all", "flops": sum(r["flops"] for r in rows)}
  total.update({b: sum(r[b] for r in rows) for b in CONV_BACKENDS})
  head = " | ".join(f"{b} ms | GFLOP/s" for b in CONV_BACKENDS)
  lines = [
    f"The convolutions of one step, each timed alone: {model} (width {width}, small stem)"
    f" at {size} px, batch {batch}, n = {num_spaces}; float32, NHWC (torch: "
    "channels-last); jax-xla-defaults: XLA's defaults (large convolutions on YNNPACK), "
    "jax: the project's options (Eigen)",
    "",
    f"| convolutions | GFLOP | {head} |",
    "|---|---|" + "---|---|" * len(CONV_BACKENDS),
  ]
  for r in rows + [total]:
    cells = " | ".join(f"{1e3 * r[b]:,.0f} | {r['flops'] / r[b] / 1e9:.0f}" for b in CONV_BACKENDS)
    lines.append(f"| {r['kind']} | {r['flops'] / 1e9:,.1f} | {cells} |")
  return "\n".join(lines)


def bench_convolutions(model, width, size, batch, num_spaces, repeats) -> str:
  """The convolutions of one step per kind and backend (what limits the CPU step)."""
  rows = measure_convolutions(model, width, size, batch, num_spaces, repeats)
  return (
    format_convolutions(rows, model, width, size, batch, num_spaces)
    + f"\n\nAfter the run: {timing.machine_description()}"
  )
