r"""Host input-pipeline throughput (examples/s), next to the train step's consumption.

  python -m leave_one_out.bench_input [--batch_size=256] [--file_size=224] \
      [--image_sizes=224,256] [--num_files=768] [--batches=6] \
      [--train_config=configs/looc_in100_r50.py]

Writes ``--num_files`` JPEG files of ``--file_size`` px (quality 90, smooth random content of
about the entropy of photos) as an image folder, then measures, on this host:

* decode: read + JPEG decode only (tf.data, AUTOTUNE parallelism), the floor of any pipeline;
* pipeline S0: the training source (``leave_one_out.data.folder.FolderSource``: read, decode, resize to
  S0 x S0, batch, corrupt-image bookkeeping) for each ``--image_sizes`` S0, steady state after two
  warm-up batches; the figure train.py can draw from this host.

With ``--train_config`` it also times the compiled train step of that config at the same global
batch (``data.image_size`` and ``train.batch_size`` overridden), on whatever JAX backend is
present, so the two rates can be compared on the same machine: the pipeline must supply at least
the step's examples/s per host, or the accelerator waits. Markdown table on stdout. Not a test.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

_BATCH = flags.DEFINE_integer("batch_size", 256, "Global batch (examples per step).")
_FILE_SIZE = flags.DEFINE_integer("file_size", 224, "Side of the generated JPEG files (px).")
_ASPECT = flags.DEFINE_float("aspect", 1.0, "Width / height of the generated files.")
_SIZES = flags.DEFINE_list("image_sizes", ["224", "256"], "S0 values of the pipeline rows.")
_NUM_FILES = flags.DEFINE_integer("num_files", 768, "JPEG files generated.")
_BATCHES = flags.DEFINE_integer("batches", 6, "Timed batches per row (after 2 warm-up).")
_ANTIALIAS = flags.DEFINE_list("antialias", ["auto", "always"],
                               "data.antialias values of the pipeline rows.")
_THREADS = flags.DEFINE_integer("threads", 0, "data.decode_threads (0 = AUTOTUNE).")
_DIR = flags.DEFINE_string("dir", "", "Where to write the files ('' = a temporary directory).")
_TRAIN_CONFIG = flags.DEFINE_string(
    "train_config", "", "Also time this config's train step at the same batch ('' = skip).")
_STEP_IMAGE_SIZE = flags.DEFINE_integer(
    "step_image_size", 0, "data.image_size of the timed train step (0 = the first S0).")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed train steps (after one compile step).")


def write_jpegs(root: str, num_files: int, height: int, width: int, classes: int = 8) -> float:
  """``root/train/c<k>/<i>.jpg``; returns the mean file size in kB."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  sizes = []
  for i in range(num_files):
    directory = os.path.join(root, "train", f"c{i % classes}")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{i:06d}.jpg")
    if os.path.exists(path):
      sizes.append(os.path.getsize(path))
      continue
    # Smooth structure (upsampled coarse noise) plus fine grain: JPEG sizes like photos'.
    coarse = rng.uniform(0, 255, (max(2, height // 8), max(2, width // 8), 3)).astype(np.float32)
    smooth = tf.image.resize(coarse[None], [height, width], method="bicubic")[0].numpy()
    image = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
    data = tf.io.encode_jpeg(image, quality=90).numpy()
    with open(path, "wb") as f:
      f.write(data)
    sizes.append(len(data))
  return float(np.mean(sizes)) / 1000


def bench_decode(root: str, batch: int, batches: int) -> float:
  """examples/s of read + decode only."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = tf.io.gfile.glob(os.path.join(root, "train", "*", "*.jpg"))
  ds = tf.data.Dataset.from_tensor_slices(sorted(files)).repeat()
  ds = ds.map(lambda p: tf.shape(tf.io.decode_jpeg(tf.io.read_file(p), channels=3))[0],
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return _examples_per_s(iter(ds.batch(batch).prefetch(2)), batch, batches)


def bench_pipeline(root: str, batch: int, image_size: int, batches: int, threads: int,
                   antialias: str = "auto") -> float:
  """examples/s of the training source (FolderSource.iterate)."""
  from leave_one_out.data import folder  # pylint: disable=g-import-not-at-top
  listing = folder.list_image_folder(root, "train")
  source = folder.FolderSource(listing.files, global_batch=batch, image_size=image_size, seed=0,
                               decode_threads=threads, antialias=antialias,
                               description="benchmark folder")
  return _examples_per_s(source.iterate(0), batch, batches)


def _examples_per_s(it, batch: int, batches: int) -> float:
  """examples/s of ``batches`` batches of ``it`` after two warm-up batches."""
  for _ in range(2):
    next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batch * batches / (time.perf_counter() - start)


def bench_train_step(config_path: str, batch: int, image_size: int, steps: int) -> tuple:
  """(examples/s, description) of the config's compiled train step at ``batch``."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from leave_one_out import config as config_lib  # pylint: disable=g-import-not-at-top
  from leave_one_out import models  # pylint: disable=g-import-not-at-top
  from leave_one_out import sharding  # pylint: disable=g-import-not-at-top
  from leave_one_out import train  # pylint: disable=g-import-not-at-top

  cfg = config_lib.load_file(config_path)
  cfg.train.batch_size = batch
  cfg.data.image_size = image_size
  mesh = sharding.make_mesh()
  model = models.build_model(cfg)
  steps_per_epoch = 1000
  tx, schedule = train.create_optimizer(cfg, steps_per_epoch)
  state = train.create_state(cfg, model, tx, mesh)
  step = train.compile_train_step(cfg, model, tx, mesh, schedule, 10 * steps_per_epoch)
  data_sharding = NamedSharding(mesh, P(sharding.DATA_AXIS))
  rng = np.random.default_rng(0)
  local = batch // jax.process_count()
  host = {"image": rng.integers(0, 256, (local, image_size, image_size, 3), dtype=np.uint8),
          "aspect": np.full((local,), 4 / 3, np.float32)}
  batch_arrays = jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(data_sharding, x), host)
  state, metrics = step(state, batch_arrays)  # compile
  jax.block_until_ready(metrics["loss"])
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = step(state, batch_arrays)
    jax.block_until_ready(metrics["loss"])
    times.append(time.perf_counter() - start)
  what = (f"{os.path.basename(config_path)}: {cfg.model.architecture}, "
          f"{len(cfg.augment.spaces) + 2} views of {cfg.augment.image_size} px, "
          f"{jax.device_count()} x {jax.devices()[0].device_kind}")
  return batch / statistics.median(times), what


def machine_description() -> str:
  """CPU cores, TensorFlow and JAX versions, JAX devices."""
  import platform  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  return (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
          f"tensorflow {tf.__version__}, jax {jax.__version__}, "
          f"{len(devices)} x {devices[0].device_kind}")


def main(argv):
  del argv
  height = _FILE_SIZE.value
  width = int(round(height * _ASPECT.value))
  root = _DIR.value or os.path.join(tempfile.gettempdir(),
                                    f"looc_bench_jpeg_{height}x{width}_{_NUM_FILES.value}")
  kb = write_jpegs(root, _NUM_FILES.value, height, width)
  batch, n = _BATCH.value, _BATCHES.value
  rows = [("read + JPEG decode only", bench_decode(root, batch, n))]
  for size in _SIZES.value:
    for antialias in _ANTIALIAS.value:
      rows.append((f"pipeline: decode + resize to S0={size} (antialias {antialias}) + batch",
                   bench_pipeline(root, batch, int(size), n, _THREADS.value, antialias)))
  if _TRAIN_CONFIG.value:
    rate, what = bench_train_step(_TRAIN_CONFIG.value, batch,
                                  _STEP_IMAGE_SIZE.value or int(_SIZES.value[0]), _STEPS.value)
    rows.append((f"train step ({what})", rate))
  print(f"Input pipeline, {_NUM_FILES.value} JPEG files of {width}x{height} px "
        f"(mean {kb:.1f} kB), global batch {batch}; "
        f"{machine_description()}\n")
  print("| what | examples/s |\n|---|---|")
  for what, rate in rows:
    print(f"| {what} | {rate:.0f} |")


if __name__ == "__main__":
  app.run(main)
