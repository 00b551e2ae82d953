"""A training source over images held in host memory (the embedded datasets).

Same interface as every training source: ``steps_per_epoch`` and ``iterate(start_step)``, this
host's contiguous share of each global batch, deterministic for a seed, so a resumed run
continues its epoch exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from leave_one_out import data as data_lib
from leave_one_out import fields


@dataclasses.dataclass(frozen=True)
class InMemorySource:
  """Shuffled epochs over images held in host memory.

  Attributes:
    images: uint8 `[N, H, W, 3]`, the whole training set.
    global_batch: examples per step over all hosts.
    seed: epoch ``e`` is permutation ``(seed, e)``; the last partial batch of an epoch is dropped.
    process_index / process_count: this host's share is a contiguous slice of the global batch,
      matching the order of ``jax.make_array_from_process_local_data``.
    labels: {name: int `[N]`} per-image labels where the source has them (the digits), for a
      supervised baseline (``labels[name][indices(step)]``); the batches carry images only.
  """

  images: np.ndarray
  global_batch: int
  seed: int
  process_index: int = 0
  process_count: int = 1
  labels: dict | None = None

  def __post_init__(self):
    data_lib.check_one_batch(len(self.images), self.global_batch, "the dataset's images")
    if self.global_batch % self.process_count:
      raise ValueError(
        f"global batch {self.global_batch} does not split over {self.process_count} hosts"
      )

  def __repr__(self) -> str:
    return (
      f"InMemorySource({self.images.shape[0]} images of {self.images.shape[1:]}, "
      f"global batch {self.global_batch}, seed {self.seed}, process "
      f"{self.process_index} of {self.process_count})"
    )

  @property
  def steps_per_epoch(self) -> int:
    return len(self.images) // self.global_batch

  def indices(self, step: int) -> np.ndarray:
    """Dataset indices of this host's examples at ``step``: `[global_batch / hosts]`."""
    epoch, within = divmod(int(step), self.steps_per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.images))
    local = self.global_batch // self.process_count
    start = within * self.global_batch + self.process_index * local
    return order[start : start + local]

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """This host's examples at ``step``: {"image": uint8 `[B / hosts, H, W, 3]`, "aspect",
    "valid"} (square images: aspect 1; every slot valid)."""
    images = self.images[self.indices(step)]
    n = len(images)
    return {"image": images, "aspect": np.ones((n,), np.float32), "valid": np.ones((n,), bool)}

  def iterate(self, start_step: int = 0):
    """Batches for ``start_step``, ``start_step + 1``, ... (endless)."""
    step = start_step
    while True:
      yield self.batch(step)
      step += 1


def validate_generated(d, splits: dict, dataset: str) -> None:
  """The checks every generated source (rendered in memory) makes of ``d``: no class filter and
  split names among ``splits`` (config split -> the generator's)."""
  check = fields.Section(d, "config.data")
  check.check(not d.classes, "classes", f"must be '' for the {dataset} dataset, got {d.classes!r}")
  for field in ("train_split", "eval_split"):
    check.check(
      d[field] in splits,
      field,
      f"must be one of {tuple(splits)} for the {dataset} dataset, got {d[field]!r}",
    )


def host_share(arrays: dict, process_index: int, process_count: int) -> dict:
  """This host's contiguous share of every array in ``arrays`` (all of one length N)."""
  n = len(next(iter(arrays.values())))
  share = slice(process_index * n // process_count, (process_index + 1) * n // process_count)
  return {k: v[share] for k, v in arrays.items()}
