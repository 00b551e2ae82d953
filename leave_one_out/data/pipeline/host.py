"""The tf.data host pipeline shared by the image-file sources (folders, tfds).

A source turns a step into a stream of *positions* (``pos = step * local_batch + k``, host-local)
and records ``{"encoded", "pos"}``; ``HostPipeline`` decodes them in parallel, drops undecodable
ones and re-assembles batches by position, so a dropped image never shifts a batch boundary and a
resumed run sees exactly the batches it would have seen.

Every batch is ``{"image": uint8 [B / hosts, S0, S0, 3], "aspect": float32 [B / hosts],
"valid": bool [B / hosts]}``. An example that fails to read or decode leaves its slot empty: a
black image with ``valid = False``, which the train step masks out of the loss (it is neither a
query nor a negative), so no image is ever duplicated into a false negative. Each one is logged
with its file name (the first 20, then every 100th), counted in ``num_corrupt`` and summarised at
the end of each epoch. A batch with no decodable image at all is an error; with
``skip_corrupt=False`` the first undecodable image is an error naming the file.
"""

from __future__ import annotations

from typing import Iterator

import jax
import numpy as np
from absl import logging

from leave_one_out import data as data_lib
from leave_one_out.data import DataError
from leave_one_out.data.pipeline import decode
from leave_one_out.data.pipeline import tf_data

LOG_FIRST_CORRUPT, LOG_EVERY_CORRUPT = 20, 100


def pipeline_kwargs(cfg) -> dict:
  """``HostPipeline``'s settings from a full config, for this host."""
  d = cfg.data
  return dict(
    global_batch=cfg.train.batch_size,
    image_size=d.image_size,
    seed=cfg.seed,
    skip_corrupt=d.skip_corrupt,
    decode_threads=d.decode_threads,
    host_prefetch=d.host_prefetch,
    resize_method=d.resize_method,
    antialias=d.antialias,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )


class HostPipeline:
  """Decoding, batching and corrupt-image handling shared by the tf.data sources.

  Subclasses say where a position's image comes from: ``describe(pos)`` (for messages) and
  ``_raw(start_pos, count)`` (the encoded bytes, for diagnosing a failed batch), and build their
  batches with ``_decoded`` and ``_aligned``.
  """

  def __init__(
    self,
    *,
    num_examples: int,
    global_batch: int,
    image_size: int,
    seed: int,
    skip_corrupt: bool = True,
    decode_threads: int = 0,
    host_prefetch: int = 2,
    resize_method: str = "bilinear",
    antialias: str = "auto",
    process_index: int = 0,
    process_count: int = 1,
    description: str = "",
  ):
    if global_batch % process_count:
      raise DataError(f"global batch {global_batch} does not split over {process_count} hosts")
    data_lib.check_one_batch(num_examples, global_batch, f"{description}: examples")
    self.num_examples = int(num_examples)
    self.global_batch = int(global_batch)
    self.local_batch = global_batch // process_count
    self.image_size = int(image_size)
    self.seed = int(seed)
    self.skip_corrupt = bool(skip_corrupt)
    self.decode_threads = int(decode_threads)
    self.host_prefetch = int(host_prefetch)
    self.resize_method = resize_method
    self.antialias = antialias
    self.process_index = int(process_index)
    self.process_count = int(process_count)
    self.description = description
    self.num_corrupt = 0  # examples skipped on this host since the source was created
    self._epoch_corrupt = 0

  @property
  def steps_per_epoch(self) -> int:
    return self.num_examples // self.global_batch

  def __repr__(self):
    return (
      f"{type(self).__name__}({self.description}: {self.num_examples} examples, "
      f"{self.steps_per_epoch} steps of {self.global_batch}, host "
      f"{self.process_index}/{self.process_count})"
    )

  # Subclasses: where a position's image comes from (for messages and diagnosis).
  def describe(self, pos: int) -> str:
    raise NotImplementedError

  def _raw(self, start_pos: int, count: int) -> list[tuple[str, bytes]]:
    raise NotImplementedError

  def _decoded(self, records):
    """records {"encoded", "pos"} -> batches {"image", "aspect", "pos"} (tf.data)."""
    tf = tf_data.tf()
    size, method, antialias = self.image_size, self.resize_method, self.antialias

    def decoded(r):
      image, aspect = decode.decode_resize(r["encoded"], size, method, antialias)
      return {"image": image, "aspect": aspect, "pos": r["pos"]}

    threads = self.decode_threads or tf.data.AUTOTUNE
    ds = records.map(tf_data.tf_function(decoded), num_parallel_calls=threads, deterministic=True)
    if self.skip_corrupt:
      ds = ds.ignore_errors()
    ds = ds.batch(self.local_batch).prefetch(self.host_prefetch)
    return ds.with_options(tf_data.read_options())

  def _diagnose(self, start_pos: int, error) -> DataError:
    """The first undecodable image of the batch at ``start_pos``, as an error naming it."""
    tf = tf_data.tf()
    for name, encoded in self._raw(start_pos, self.local_batch):
      try:
        decode.decode_resize(
          tf.constant(encoded), self.image_size, self.resize_method, self.antialias
        )
      except Exception as e:  # pylint: disable=broad-except
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        return DataError(
          f"undecodable image {name} ({message}); set "
          "config.data.skip_corrupt=True to skip such images"
        )
    return DataError(
      f"reading the batch at position {start_pos} ({self.describe(start_pos)}) failed: {error}"
    )

  def _aligned(self, batches, first_pos: int, end_pos: int | None) -> Iterator[dict]:
    """Numpy batches of exactly ``local_batch`` positions each, from ``first_pos`` on."""
    tf = tf_data.tf()
    b = self.local_batch
    start, pending = first_pos, None
    iterator = iter(batches)
    while True:
      try:
        got = next(iterator)
      except StopIteration:
        break
      except tf.errors.OpError as e:
        raise self._diagnose(start, e) from e
      pos = got["pos"]
      if pending is None and len(pos) == b and pos[0] == start and pos[-1] == start + b - 1:
        yield self._finish(
          start, {"image": got["image"], "aspect": got["aspect"], "valid": np.ones((b,), bool)}
        )
        start += b
        continue
      pending = got if pending is None else {k: np.concatenate([pending[k], got[k]]) for k in got}
      while pending is not None and pending["pos"][-1] >= start + b:
        pending, batch = self._take(pending, start)
        yield self._finish(start, batch)
        start += b
    while end_pos is not None and start < end_pos and pending is not None:
      pending, batch = self._take(pending, start)
      yield self._finish(start, batch)
      start += b

  def _take(self, pending, start):
    """Splits off the batch at ``start``; a dropped slot stays empty (black, ``valid`` False)."""
    b = self.local_batch
    if pending is None:
      chunk, rest = None, None
    else:
      take = pending["pos"] < start + b
      chunk = {k: v[take] for k, v in pending.items()}
      rest = {k: v[~take] for k, v in pending.items()} if not take.all() else None
    n = 0 if chunk is None else len(chunk["pos"])
    if n == 0:
      raise DataError(
        f"no decodable image in a whole batch of {b} ({self.description}, "
        f"e.g. {self.describe(start)}); is the data corrupt?"
      )
    slots = (chunk["pos"] - start).astype(np.int64)
    missing = np.setdiff1d(np.arange(b), slots)
    image = np.zeros((b,) + chunk["image"].shape[1:], chunk["image"].dtype)
    aspect = np.ones((b,), np.float32)
    valid = np.zeros((b,), bool)
    image[slots], aspect[slots], valid[slots] = chunk["image"], chunk["aspect"], True
    for m in missing:
      self.num_corrupt += 1
      self._epoch_corrupt += 1
      if self.num_corrupt <= LOG_FIRST_CORRUPT or self.num_corrupt % LOG_EVERY_CORRUPT == 0:
        logging.warning(
          "Skipped an unreadable image (%d so far on this host): %s",
          self.num_corrupt,
          self.describe(start + int(m)),
        )
    return rest, {"image": image, "aspect": aspect, "valid": valid}

  def _finish(self, start: int, batch: dict) -> dict:
    step = start // self.local_batch
    if (step + 1) % self.steps_per_epoch == 0 and self._epoch_corrupt:
      logging.warning(
        "Epoch %d: skipped %d unreadable images on host %d (%d in all); their "
        "slots were masked out of the loss.",
        step // self.steps_per_epoch,
        self._epoch_corrupt,
        self.process_index,
        self.num_corrupt,
      )
      self._epoch_corrupt = 0
    return batch
