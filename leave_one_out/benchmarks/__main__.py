r"""Command line of every benchmark: ``python -m leave_one_out.benchmarks --what=...``.

  python -m leave_one_out.benchmarks --what=views [--batch_size=256] [--sizes=64,224]
  python -m leave_one_out.benchmarks --what=step --model=resnet50 --step_size=224 \
      --batch_size=256 --precision=bfloat16 --num_spaces=3 [--kinds=looc,moco,supervised]
  python -m leave_one_out.benchmarks --what=torch --batch_size=64 --num_spaces=2 --repeats=3 \
      [--variants=jax,jax-xla-defaults,torch]   (needs torch: pip install torch==2.13.0)
  python -m leave_one_out.benchmarks --what=torch_convs --batch_size=64 --num_spaces=2 \
      --repeats=3   (the step's convolutions alone, per kind: XLA defaults, the project, torch)
  python -m leave_one_out.benchmarks --what=input [--file_size=224] [--image_sizes=224,256] \
      [--num_files=768] [--batches=6] [--train_config=configs/looc_in100_r50.py]
  python -m leave_one_out.benchmarks --what=accelerator_check [--report=FILE] [--size=full]
      (the prepared check of a GPU/TPU host that launch/gpu.sh check runs; exits non-zero when
      a section fails)

``--what`` is a comma-separated list of benchmarks; each prints a Markdown table after one line
naming the machine (figures go in BENCHMARKS.md with it).
"""

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the input benchmark uses tf.data

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from leave_one_out.benchmarks import accelerator_check  # noqa: E402
from leave_one_out.benchmarks import compare_torch  # noqa: E402
from leave_one_out.benchmarks import host_input  # noqa: E402
from leave_one_out.benchmarks import step  # noqa: E402
from leave_one_out.benchmarks import timing  # noqa: E402
from leave_one_out.benchmarks import views  # noqa: E402

FLAGS = flags.FLAGS


def _input_table(f) -> str:
  """The host input pipeline's examples/s: decoding alone, the pipeline at each S0 and
  antialias setting, and optionally a config's train step at the same batch."""
  height = f.file_size
  width = int(round(height * f.aspect))
  root = f.dir or os.path.join(
    tempfile.gettempdir(), f"looc_bench_jpeg_{height}x{width}_{f.num_files}"
  )
  kb = host_input.write_jpegs(root, f.num_files, height, width)
  batch, n = f.batch_size, f.batches
  rows = [("read + JPEG decode only", host_input.bench_decode(root, batch, n))]
  for size in f.image_sizes:
    for antialias in f.antialias:
      rows.append(
        (
          f"pipeline: decode + resize to S0={size} (antialias {antialias}) + batch",
          host_input.bench_pipeline(root, batch, int(size), n, f.threads, antialias),
        )
      )
  if f.train_config:
    size = f.step_image_size or int(f.image_sizes[0])
    rate, what = host_input.bench_train_step(f.train_config, batch, size, f.steps)
    rows.append((f"train step ({what})", rate))
  lines = [
    f"Input pipeline, {f.num_files} JPEG files of {width}x{height} px (mean {kb:.1f} kB), "
    f"global batch {batch}.",
    "",
    "| what | examples/s |",
    "|---|---|",
  ]
  return "\n".join(lines + [f"| {what} | {rate:.0f} |" for what, rate in rows])


BENCHMARKS = {
  "views": lambda f: views.bench_views(
    f.batch_size, [int(s) for s in f.sizes], f.source_factor, f.repeats
  ),
  "step": lambda f: step.bench_step(
    f.kinds,
    f.model,
    f.width,
    f.step_size,
    f.batch_size,
    f.precision,
    f.num_spaces,
    f.repeats,
    f.peak_tflops,
  ),
  "torch": lambda f: compare_torch.bench_torch(
    f.variants, f.model, f.width, f.step_size, f.batch_size, f.num_spaces, f.repeats
  ),
  "torch_convs": lambda f: compare_torch.bench_convolutions(
    f.model, f.width, f.step_size, f.batch_size, f.num_spaces, f.repeats
  ),
  "input": _input_table,
}
CHECK = "accelerator_check"  # not a table: a report file and an exit status


def define_flags() -> None:
  flags.DEFINE_list(
    "what", ["views"], f"Benchmarks to run (comma-separated): {list(BENCHMARKS)}, or {CHECK} alone."
  )
  flags.DEFINE_integer("batch_size", 256, "Images per batch (input: the global batch).")
  flags.DEFINE_integer(
    "repeats",
    5,
    "Timed runs per case (median reported); views sides above 128 px use max(2, repeats // 2).",
  )
  flags.DEFINE_list("sizes", ["64", "224"], "views: output sides S.")
  flags.DEFINE_float("source_factor", 1.15, "views: source side / output side.")
  flags.DEFINE_string("model", "resnet18", "step: architecture (resnet.ARCHITECTURES).")
  flags.DEFINE_integer("width", 64, "step: channels of the first stage.")
  flags.DEFINE_integer("step_size", 64, "step: view side S.")
  flags.DEFINE_integer("num_spaces", 3, "step: n, augmentation-specific spaces.")
  flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "step: computation dtype.")
  flags.DEFINE_list(
    "kinds",
    ["looc", "moco", "supervised"],
    "step: which train steps to time: looc, moco, supervised, or looc/moco with '+'-joined "
    "objectives (moco+augself, looc+essl, moco+cassle, ...).",
  )
  flags.DEFINE_list(
    "variants",
    ["jax", "jax-xla-defaults", "torch"],
    "torch: steps timed side by side (--model, --width, --step_size, "
    f"--batch_size, --num_spaces <= 2, --repeats): {list(compare_torch.VARIANTS)}.",
  )
  flags.DEFINE_float(
    "peak_tflops",
    0.0,
    "step: the device's peak TFLOP/s for the utilisation column (0 = look it up by device kind).",
  )
  flags.DEFINE_integer("file_size", 224, "input: side of the generated JPEG files (px).")
  flags.DEFINE_float("aspect", 1.0, "input: width / height of the generated files.")
  flags.DEFINE_list("image_sizes", ["224", "256"], "input: S0 values of the pipeline rows.")
  flags.DEFINE_integer("num_files", 768, "input: JPEG files generated.")
  flags.DEFINE_integer("batches", 6, "input: timed batches per row (after 2 warm-up).")
  flags.DEFINE_list(
    "antialias", ["auto", "always"], "input: data.antialias values of the pipeline rows."
  )
  flags.DEFINE_integer("threads", 0, "input: data.decode_threads (0 = AUTOTUNE).")
  flags.DEFINE_string("dir", "", "input: where to write the files ('' = a temporary directory).")
  flags.DEFINE_string(
    "train_config", "", "input: also time this config's train step at the same batch ('' = skip)."
  )
  flags.DEFINE_integer(
    "step_image_size", 0, "input: data.image_size of the timed train step (0 = the first S0)."
  )
  flags.DEFINE_integer("steps", 3, "input: timed train steps (after one compile step).")
  accelerator_check.define_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if CHECK in FLAGS.what:
    if FLAGS.what != [CHECK]:
      raise app.UsageError(
        f"--what={CHECK} runs alone (it writes a report and exits with its status)"
      )
    accelerator_check.main(argv)
    return
  unknown = [w for w in FLAGS.what if w not in BENCHMARKS]
  if unknown:
    raise app.UsageError(f"unknown --what {unknown}; choose from {sorted(BENCHMARKS)} or {CHECK}")
  print(f"Machine: {timing.machine_description()}\n")
  for what in FLAGS.what:
    try:
      table = BENCHMARKS[what](FLAGS)
    except ImportError as error:  # an optional dependency (torch) is missing
      sys.exit(f"--what={what}: {error}")
    print(f"## {what}\n\n{table}\n", flush=True)


if __name__ == "__main__":
  define_flags()
  app.run(main)
