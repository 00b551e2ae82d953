"""Command line of the view and train-step benchmarks (``leave_one_out/benchmarks/``).

  python -m leave_one_out.benchmark --what=views [--batch_size=256] [--sizes=64,224]
  python -m leave_one_out.benchmark --what=step --model=resnet50 --step_size=224 \
      --batch_size=256 --precision=bfloat16 --num_spaces=3 [--kinds=looc,moco,supervised]
  python -m leave_one_out.benchmark --what=torch --batch_size=64 --num_spaces=2 --repeats=3 \
      [--variants=jax,jax-xla-defaults,torch]   (needs torch: pip install torch==2.13.0)
  python -m leave_one_out.benchmark --what=torch_convs --batch_size=64 --num_spaces=2 \
      --repeats=3   (the step's convolutions alone, per kind: XLA defaults, the project, torch)

``--what`` is a comma-separated list of benchmarks; each prints a Markdown table after one line
naming the machine (figures go in BENCHMARKS.md with it).
"""

import sys

from absl import app, flags

from leave_one_out.benchmarks import common
from leave_one_out.benchmarks import compare_torch
from leave_one_out.benchmarks import step
from leave_one_out.benchmarks import views

FLAGS = flags.FLAGS
BENCHMARKS = {
    "views": lambda f: views.bench_views(f.batch_size, [int(s) for s in f.sizes],
                                         f.source_factor, f.repeats),
    "step": lambda f: step.bench_step(f.kinds, f.model, f.width, f.step_size, f.batch_size,
                                      f.precision, f.num_spaces, f.repeats, f.peak_tflops),
    "torch": lambda f: compare_torch.bench_torch(f.variants, f.model, f.width, f.step_size,
                                                 f.batch_size, f.num_spaces, f.repeats),
    "torch_convs": lambda f: compare_torch.bench_convolutions(
        f.model, f.width, f.step_size, f.batch_size, f.num_spaces, f.repeats),
}


def define_flags() -> None:
  flags.DEFINE_list("what", ["views"], f"Benchmarks to run (comma-separated): {list(BENCHMARKS)}.")
  flags.DEFINE_integer("batch_size", 256, "Images per batch.")
  flags.DEFINE_integer("repeats", 5, "Timed runs per case (median reported); views sides above "
                       "128 px use max(2, repeats // 2).")
  flags.DEFINE_list("sizes", ["64", "224"], "views: output sides S.")
  flags.DEFINE_float("source_factor", 1.15, "views: source side / output side.")
  flags.DEFINE_string("model", "resnet18", "step: architecture (models.ARCHITECTURES).")
  flags.DEFINE_integer("width", 64, "step: channels of the first stage.")
  flags.DEFINE_integer("step_size", 64, "step: view side S.")
  flags.DEFINE_integer("num_spaces", 3, "step: n, augmentation-specific spaces.")
  flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "step: computation dtype.")
  flags.DEFINE_list("kinds", ["looc", "moco", "supervised"], "step: which train steps to time.")
  flags.DEFINE_list("variants", ["jax", "jax-xla-defaults", "torch"],
                    "torch: steps timed side by side (--model, --width, --step_size, "
                    f"--batch_size, --num_spaces <= 2, --repeats): {list(compare_torch.VARIANTS)}.")
  flags.DEFINE_float("peak_tflops", 0.0, "step: the device's peak TFLOP/s for the utilisation "
                     "column (0 = look it up by device kind).")


def main(argv):
  del argv
  unknown = [w for w in FLAGS.what if w not in BENCHMARKS]
  if unknown:
    raise app.UsageError(f"unknown --what {unknown}; choose from {sorted(BENCHMARKS)}")
  print(f"Machine: {common.machine_description()}\n")
  for what in FLAGS.what:
    try:
      table = BENCHMARKS[what](FLAGS)
    except ImportError as error:  # an optional dependency (torch) is missing
      sys.exit(f"--what={what}: {error}")
    print(f"## {what}\n\n{table}\n", flush=True)


if __name__ == "__main__":
  define_flags()
  app.run(main)
