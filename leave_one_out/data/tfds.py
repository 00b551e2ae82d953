"""tensorflow-datasets: any prepared tfds image dataset, by name (the registry's default source).

``config.data.name`` is ``"name"``, ``"name/config"`` or ``"name:version"`` (e.g.
``caltech_birds2011``, ``imagenet2012_corrupted/gaussian_noise_3``, ``oxford_flowers102:2.1.1``),
read from ``data.data_dir`` (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``; gs://
works). Training never downloads: unprepared data is an error naming the ``tfds build`` command.
``data.classes`` keeps only some classes (``leave_one_out.data.pipeline.classes``). Reading, counting and exporting a split:
``leave_one_out.data.pipeline.tfds_reader``.

Training (``TfdsSource``; TFRecord files are sequential, with no random access): each host reads
its even share of the split (``tfds.split_for_jax_process``); epoch ``e`` shuffles the file order
and a ``shuffle_buffer``-record buffer with seeds derived from ``(seed, e, host)``. Resuming at
step ``s`` rebuilds epoch ``s // steps_per_epoch`` and skips the first ``s mod steps_per_epoch``
local batches as *encoded records* (no decoding): at most one epoch of reading (for the
ImageNet-100 view up to one pass over ImageNet's ~140 GB of records: minutes on local NVMe). Every
host takes exactly ``steps_per_epoch * B / hosts`` records per epoch; a host whose share is
shorter (a class-filtered view is not split evenly) wraps around its own shard, repeating a few
images. The next epoch's pipeline is started in the background before the current one ends.
``num_examples`` is ``data.num_examples`` if set, else the tfds metadata, the known ImageNet-100
sizes, or (other class-filtered views) one counting pass over the labels.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import re
from typing import Iterator

from leave_one_out.data import DataError
from leave_one_out.data.pipeline import classes as class_lists
from leave_one_out.data.pipeline import eval_split
from leave_one_out.data.pipeline import host
from leave_one_out.data.pipeline import tf_data
from leave_one_out.data.pipeline import tfds_reader

# A split of a prepared dataset as an image folder (tfds_reader's; users import it from here).
export_image_folder = tfds_reader.export_image_folder


class TfdsSource(host.HostPipeline):
  """Training batches from a prepared tfds split (sequential reads; see the module docstring)."""

  def __init__(self, data: tfds_reader.TfdsDataset, *, shuffle_buffer: int = 10_000, **kwargs):
    self.data = data
    self.shuffle_buffer = int(shuffle_buffer)
    super().__init__(num_examples=data.num_examples, **kwargs)
    if self.process_count > 1:
      self.host_split = tf_data.tfds().split_for_jax_process(
        data.split,
        process_index=self.process_index,
        process_count=self.process_count,
        drop_remainder=True,
      )
    else:
      self.host_split = data.split

  def describe(self, pos: int) -> str:
    step, k = divmod(int(pos), self.local_batch)
    epoch, within = divmod(step, self.steps_per_epoch)
    return (
      f"{self.data.name} {self.data.split}: example {k} of step {within} of epoch "
      f"{epoch} on host {self.process_index}"
    )

  def _epoch_records(self, epoch: int, skip: int, with_ids: bool = False):
    """This host's records of ``epoch`` from local position ``skip`` on (not decoded)."""
    tf = tf_data.tf()
    quota = self.steps_per_epoch * self.local_batch
    ds = tfds_reader.tfds_records(
      self.data,
      self.host_split,
      labels=False,
      with_ids=with_ids,
      shuffle_seed=tf_data.derive_seed(self.seed, epoch, self.process_index, 1),
    )
    ds = ds.shuffle(
      self.shuffle_buffer,
      seed=tf_data.derive_seed(self.seed, epoch, self.process_index, 2),
      reshuffle_each_iteration=False,
    )
    # Every host takes exactly `quota` records; a shorter shard wraps around (repeat() of an
    # empty dataset ends, so an empty shard ends the epoch early and is reported).
    ds = ds.repeat().take(quota).skip(skip)
    first = epoch * quota + skip
    positions = tf.data.Dataset.range(first, first + quota - skip)
    ds = tf.data.Dataset.zip((ds, positions))
    return ds.map(tf_data.tf_function(lambda r, pos: dict(r, pos=pos)))

  def _raw(self, start_pos, count):
    step = start_pos // self.local_batch
    epoch, within = divmod(step, self.steps_per_epoch)
    ds = self._epoch_records(epoch, within * self.local_batch, with_ids=True).take(count)
    return [
      (f"{self.data.name} record {r['name'].decode()}", r["encoded"])
      for r in ds.as_numpy_iterator()
    ]

  def _epoch_batches(self, epoch: int, within: int) -> Iterator[dict]:
    b, spe = self.local_batch, self.steps_per_epoch
    ds = self._decoded(self._epoch_records(epoch, within * b))
    produced = 0
    for batch in self._aligned(
      ds.as_numpy_iterator(), (epoch * spe + within) * b, (epoch + 1) * spe * b
    ):
      produced += 1
      yield batch
    if produced < spe - within:
      raise DataError(
        f"{self.description} yielded {produced} of {spe - within} batches in "
        f"epoch {epoch} on host {self.process_index}: its shard of the split is "
        "empty (after the class filter, if any) or ends in unreadable images"
      )

  def iterate(self, start_step: int = 0) -> Iterator[dict]:
    """Batches for ``start_step``, ``start_step + 1``, ... (endless)."""
    spe = self.steps_per_epoch
    epoch, within = divmod(int(start_step), spe)
    current = self._epoch_batches(epoch, within)
    lookahead = max(1, min(4, spe // 4))

    def start(e):  # build epoch e's pipeline and pull its first batch (in the background)
      gen = self._epoch_batches(e, 0)
      return gen, next(gen)

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="next_epoch") as pool:
      while True:
        upcoming = None
        for step_in_epoch, batch in enumerate(current, start=within):
          if upcoming is None and step_in_epoch >= spe - lookahead:
            upcoming = pool.submit(start, epoch + 1)
          yield batch
        if upcoming is None:
          upcoming = pool.submit(start, epoch + 1)
        gen, first = upcoming.result()
        current = itertools.chain([first], gen)
        epoch, within = epoch + 1, 0


# ------------------------------------------------------------------------------ the source
# ``imagenet100`` reuses these with a fixed name and class list (``leave_one_out.data.imagenet100``).


def validate(d, registered=()) -> None:
  """The dataset name must be a tfds builder (or a prepared directory); nothing is read."""
  tfds_reader.check_dataset_name(d.name, d.data_dir, registered)


def check_ready(d, splits: dict, *, name: str | None = None) -> None:
  """DataError unless the dataset is prepared (metadata only; never downloads)."""
  del splits  # a missing split is reported by open_tfds, listing the dataset's splits
  tfds_reader.tfds_builder(name or d.name, d.data_dir)


def describe(d, *, name: str | None = None) -> str:
  return f"tfds {name or d.name}" + (f" in {d.data_dir}" if d.data_dir else "")


def train_source(cfg, *, name: str | None = None, classes=None) -> TfdsSource:
  """This host's training batches from ``train_split`` (``name``/``classes`` override the
  config's, for sources built on this one)."""
  d = cfg.data
  name = name or d.name
  classes = class_lists.class_list(d.classes) if classes is None else tuple(classes)
  data = tfds_reader.open_tfds(
    name,
    d.train_split,
    data_dir=d.data_dir,
    classes=classes,
    image_key=d.image_key,
    label_key=d.label_key,
    num_examples=d.num_examples,
  )
  return TfdsSource(
    data,
    shuffle_buffer=d.shuffle_buffer,
    description=f"tfds {name} {d.train_split}" + (f" ({len(classes)} classes)" if classes else ""),
    **host.pipeline_kwargs(cfg),
  )


def eval_source(
  d,
  split: str,
  *,
  num_examples: int,
  process_index: int,
  process_count: int,
  seed: int,
  name: str | None = None,
  classes=None,
  **common_kwargs,
) -> eval_split.EvalSource:
  """``split`` in its stored order; with ``num_examples``, its first N (shared out by host)."""
  del seed  # tfds splits are stored shuffled
  name = name or d.name
  classes = class_lists.class_list(d.classes) if classes is None else tuple(classes)
  data = tfds_reader.open_tfds(
    name,
    split,
    data_dir=d.data_dir,
    classes=classes,
    image_key=d.image_key,
    label_key=d.label_key,
    need_labels=True,
  )
  total = min(num_examples, data.num_examples) if num_examples else data.num_examples
  host_split, limit = split, (total if num_examples else None)
  if num_examples and data.remap is None and not re.search(r"[\[+]", split):
    host_split, limit = f"{split}[:{total}]", None  # tfds slicing: hosts can share it out
  per_host = total
  if process_count > 1:
    host_split = tf_data.tfds().split_for_jax_process(
      host_split, process_index=process_index, process_count=process_count
    )
    per_host = total // process_count  # approximately: tfds splits evenly to +-1 example
    limit = None if limit is None else per_host

  def records():
    ds = tfds_reader.tfds_records(data, host_split, shuffle_seed=None, labels=True)
    return ds if limit is None else ds.take(limit)

  if data.class_names is None:
    raise DataError(
      f"evaluation needs class labels, but {name!r} feature "
      f"{d.label_key!r} is not a ClassLabel; set config.data.label_key"
    )
  return eval_split.EvalSource(
    records,
    num_examples=per_host,
    num_classes=len(data.class_names),
    class_names=data.class_names,
    description=f"tfds {name} {split}",
    **common_kwargs,
  )
