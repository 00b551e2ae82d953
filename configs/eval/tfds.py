r"""Evaluation on a tensorflow-datasets dataset: every protocol, one table.

  python -m leave_one_out.evaluate --workdir=/ckpt/looc \
      --config=configs/eval/tfds.py:caltech_birds2011 \
      --config.dataset.data.data_dir=/data/tensorflow_datasets

``arg`` (after the colon) is a tfds name: ``caltech_birds2011`` (CUB-200, train / test),
``oxford_flowers102`` (train / test), ``i_naturalist2018`` (train / validation), ``imagenet100``
(the CMC 100-class view of imagenet2012, train / validation), or any other tfds image dataset
with a ClassLabel ("name", "name/config", "name:version"; train / test by default, train /
validation for those in VALIDATION_ONLY below, e.g. imagenet2012, food101). Where
``configs/data/<name>.py`` exists its data section (splits, crop fraction, class filter) is
used as it is; any other name gets ``data.config.default_config()`` with train / test splits.
Nothing is downloaded: the dataset must be prepared already (``tfds build <name>
--data_dir=<dir>``; an unprepared one fails at start-up, before the model loads, with that
command). ImageNet-C is not an evaluation dataset of its own: it is the corruption protocol of
ImageNet-100 (``configs/eval/tfds.py:imagenet100 --config.corruption.source=
imagenet2012_corrupted``).

What runs (docs/evaluation.md): a linear probe of the class label (top-1 / top-5 on the test
split, L2 strength chosen on 20% of the training split), the rotation probe, kNN, K-shot with
K = 5 and 10 drawn from the training split, the probe under 15 synthetic corruptions x 5
severities, and augmentation sensitivity. Images: shorter side resized to S /
``dataset.data.eval_crop_fraction``, centre crop S x S on the host (tf.data), S = the model's
input size (pretraining ``augment.image_size``). Writes ``<workdir>/evaluation_<name>.json`` and
``sensitivity_<name>.png`` (one file per dataset, so several evaluations of one workdir do not
overwrite each other) and prints the table; the rows are feature kinds, the columns
``dim | top-1 | top-5 | rotation | kNN | 5-shot | 10-shot | corrupt``.

Host memory: both splits are held as uint8 at S x S (CUB-200 at 224 px: 0.9 GB train + 0.9 GB
test; iNaturalist 2018 train would be 66 GB, so set ``--config.dataset.num_train=100000`` or
less there). Every host reads the whole split.

configs/eval/folder.py uses the same knobs for an image folder. Every field can be overridden on
the command line (``--config.fewshot.shots=(5,)``, ``--config.dataset.data.eval_split=
validation``); every field is validated at start-up (a ValueError naming
``eval_config.<field>``).
"""

import os
import re

from leave_one_out import config as config_lib
from leave_one_out import evaluate
from leave_one_out.data import config as data_section

DATA_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
# tfds datasets evaluated on "validation" (no labelled test split); any other name: "test".
VALIDATION_ONLY = ("imagenet2012", "imagenet2012_subset", "imagenet_resized", "imagenette",
                   "food101", "i_naturalist2017", "i_naturalist2021", "places365_small")
USAGE = ("configs/eval/tfds.py takes a tfds dataset name, e.g. "
         "--config=configs/eval/tfds.py:caltech_birds2011")


def data_config(name: str, arg=None):
  """``configs/data/<name>.py``'s ``get_config(arg)`` (a data section), or None if none."""
  path = os.path.join(DATA_CONFIGS, f"{name}.py")
  if not os.path.exists(path):
    return None
  return config_lib.load_file(path, arg)


def eval_config(data, tag: str):
  """The evaluation config for the data section ``data``; ``tag`` names the output files.

  Starts from ``evaluate.default_config()`` (every knob documented in configs/eval/synthetic.py)
  and changes only what a single-label tfds or folder dataset needs.
  """
  c = evaluate.default_config()
  tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", tag).strip("_") or "data"
  c.results_file = f"evaluation_{tag}.json"  # written in the workdir
  c.heatmap_file = f"sensitivity_{tag}.png"  # the augmentation-sensitivity heatmap, in the workdir

  # Images and labels: the "data" source reads dataset.data through
  # leave_one_out.data.load_eval_arrays; evaluation "train" = data.train_split, "test" =
  # data.eval_split (they must differ).
  c.dataset.name = "data"
  c.dataset.data = data  # a data section; its fields (docs/data.md): name, data_dir,
  #   train_split, eval_split, classes ("" | "imagenet100" | a class-list file), image_key,
  #   label_key, eval_crop_fraction (shorter side -> S / this, centre crop S), resize_method,
  #   antialias, skip_corrupt (unreadable images skipped and counted, else an error naming the
  #   file). Its image_size, num_examples, shuffle_buffer, decode_threads and host_prefetch are
  #   pretraining settings, unused here.
  c.dataset.num_train = 0  # training images read (probe/kNN/few-shot training set); 0 = the
  #                          whole train split (tfds: its first N in stored order; folder: N
  #                          files in a fixed pseudo-random order drawn with dataset.seed)
  c.dataset.num_test = 0  # test images read (every reported accuracy); 0 = the whole eval split
  c.dataset.labels = ("label",)  # the one label of a tfds / folder dataset (its class)
  c.dataset.primary_label = "label"
  return c


def get_config(arg=None):
  if not arg:
    raise ValueError(USAGE)
  base = arg.split(":")[0].split("/")[0]
  if base == "folder":
    raise ValueError("an image folder is configs/eval/folder.py:<root>, not configs/eval/tfds.py")
  if base == "synthetic":
    raise ValueError("the embedded dataset is configs/eval/synthetic.py")
  if base == "imagenet2012_corrupted":
    raise ValueError("ImageNet-C is the corruption protocol of an ImageNet-class dataset: "
                     "--config=configs/eval/tfds.py:imagenet100 "
                     "--config.corruption.source=imagenet2012_corrupted")
  data = data_config(base)
  if data is None:
    data = data_section.default_config()
    data.train_split = "train"
    # A missing split is an error listing the dataset's splits; override with
    # --config.dataset.data.eval_split=<split>.
    data.eval_split = "validation" if base in VALIDATION_ONLY else "test"
  data.name = arg  # keeps a "/config" or ":version" suffix
  return eval_config(data, arg)
