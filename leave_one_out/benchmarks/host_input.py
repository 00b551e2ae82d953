"""Host input-pipeline throughput (examples/s), next to the train step's consumption.

  python -m leave_one_out.benchmarks --what=input [--batch_size=256] [--file_size=224] \
      [--image_sizes=224,256] [--num_files=768] [--batches=6] \
      [--train_config=configs/looc_in100_r50.py]

Writes JPEG files (quality 90, smooth random content of about the entropy of photos) as an image
folder, then measures on this host: read + JPEG decode only (tf.data, AUTOTUNE parallelism), the
floor of any pipeline; the training source (``leave_one_out.data.folder.FolderSource``: read,
decode, resize to S0 x S0, batch, corrupt-image bookkeeping) for each S0, steady state after two
warm-up batches; and optionally a config's compiled train step at the same global batch, on
whatever JAX backend is present: the pipeline must supply at least the step's examples/s per
host, or the accelerator waits.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import config as config_lib
from leave_one_out import sharding
from leave_one_out import train
from leave_one_out.benchmarks import timing
from leave_one_out.data import folder
from leave_one_out.data.pipeline import tf_data as common_data


def write_jpegs(root: str, num_files: int, height: int, width: int, classes: int = 8) -> float:
  """``root/train/c<k>/<i>.jpg``; returns the mean file size in kB."""
  tf = common_data.tf()
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
  tf = common_data.tf()
  files = tf.io.gfile.glob(os.path.join(root, "train", "*", "*.jpg"))
  ds = tf.data.Dataset.from_tensor_slices(sorted(files)).repeat()
  ds = ds.map(
    lambda p: tf.shape(tf.io.decode_jpeg(tf.io.read_file(p), channels=3))[0],
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=True,
  )
  return _examples_per_s(iter(ds.batch(batch).prefetch(2)), batch, batches)


def bench_pipeline(
  root: str, batch: int, image_size: int, batches: int, threads: int, antialias: str = "auto"
) -> float:
  """examples/s of the training source (FolderSource.iterate)."""
  listing = folder.list_image_folder(root, "train")
  source = folder.FolderSource(
    listing.files,
    global_batch=batch,
    image_size=image_size,
    seed=0,
    decode_threads=threads,
    antialias=antialias,
    description="benchmark folder",
  )
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
  cfg = config_lib.load_file(config_path)
  cfg.train.batch_size = batch
  cfg.data.image_size = image_size
  mesh = sharding.make_mesh()
  compiled = train.programs(cfg, mesh, steps_per_epoch=1000)
  state, step = compiled.new_state(cfg.seed), compiled.step
  data_sharding = NamedSharding(mesh, P(sharding.DATA_AXIS))
  rng = np.random.default_rng(0)
  local = batch // jax.process_count()
  host = {
    "image": rng.integers(0, 256, (local, image_size, image_size, 3), dtype=np.uint8),
    "aspect": np.full((local,), 4 / 3, np.float32),
  }
  batch_arrays = jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(data_sharding, x), host
  )
  seconds, _ = timing.time_steps(step, state, lambda i: (batch_arrays,), steps)
  what = (
    f"{os.path.basename(config_path)}: {cfg.model.architecture}, "
    f"{len(cfg.augment.spaces) + 2} views of {cfg.augment.image_size} px, "
    f"{jax.device_count()} x {jax.devices()[0].device_kind}"
  )
  return batch / seconds, what
