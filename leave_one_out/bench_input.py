"""Command line of the host input-pipeline benchmark (``leave_one_out/benchmarks/pipeline.py``).

  python -m leave_one_out.bench_input [--batch_size=256] [--file_size=224] \
      [--image_sizes=224,256] [--num_files=768] [--batches=6] \
      [--train_config=configs/looc_in100_r50.py]

Prints a Markdown table of examples/s (read + decode; the training source for each S0; with
``--train_config``, that config's train step at the same batch) after the machine's line.
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from leave_one_out.benchmarks import common  # noqa: E402
from leave_one_out.benchmarks import pipeline  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_integer("batch_size", 256, "Global batch (examples per step).")
  flags.DEFINE_integer("file_size", 224, "Side of the generated JPEG files (px).")
  flags.DEFINE_float("aspect", 1.0, "Width / height of the generated files.")
  flags.DEFINE_list("image_sizes", ["224", "256"], "S0 values of the pipeline rows.")
  flags.DEFINE_integer("num_files", 768, "JPEG files generated.")
  flags.DEFINE_integer("batches", 6, "Timed batches per row (after 2 warm-up).")
  flags.DEFINE_list("antialias", ["auto", "always"], "data.antialias values of the pipeline rows.")
  flags.DEFINE_integer("threads", 0, "data.decode_threads (0 = AUTOTUNE).")
  flags.DEFINE_string("dir", "", "Where to write the files ('' = a temporary directory).")
  flags.DEFINE_string("train_config", "",
                      "Also time this config's train step at the same batch ('' = skip).")
  flags.DEFINE_integer("step_image_size", 0,
                       "data.image_size of the timed train step (0 = the first S0).")
  flags.DEFINE_integer("steps", 3, "Timed train steps (after one compile step).")


def main(argv):
  del argv
  height = FLAGS.file_size
  width = int(round(height * FLAGS.aspect))
  root = FLAGS.dir or os.path.join(tempfile.gettempdir(),
                                   f"looc_bench_jpeg_{height}x{width}_{FLAGS.num_files}")
  kb = pipeline.write_jpegs(root, FLAGS.num_files, height, width)
  batch, n = FLAGS.batch_size, FLAGS.batches
  rows = [("read + JPEG decode only", pipeline.bench_decode(root, batch, n))]
  for size in FLAGS.image_sizes:
    for antialias in FLAGS.antialias:
      rows.append((f"pipeline: decode + resize to S0={size} (antialias {antialias}) + batch",
                   pipeline.bench_pipeline(root, batch, int(size), n, FLAGS.threads, antialias)))
  if FLAGS.train_config:
    size = FLAGS.step_image_size or int(FLAGS.image_sizes[0])
    rate, what = pipeline.bench_train_step(FLAGS.train_config, batch, size, FLAGS.steps)
    rows.append((f"train step ({what})", rate))
  print(f"Input pipeline, {FLAGS.num_files} JPEG files of {width}x{height} px "
        f"(mean {kb:.1f} kB), global batch {batch}; "
        f"{common.machine_description()}\n")
  print("| what | examples/s |\n|---|---|")
  for what, rate in rows:
    print(f"| {what} | {rate:.0f} |")


if __name__ == "__main__":
  define_flags()
  app.run(main)
