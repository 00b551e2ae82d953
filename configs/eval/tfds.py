r"""Evaluation on a tensorflow-datasets dataset with the paper's protocols, one table.

  python -m leave_one_out.evaluate --workdir=/ckpt/looc \
      --config=configs/eval/tfds.py:caltech_birds2011 \
      --config.dataset.data.data_dir=/data/tensorflow_datasets

``arg`` (after the colon) is a tfds name: ``imagenet100`` (the CMC 100-class view of
imagenet2012, train / validation; with ImageNet-C), ``caltech_birds2011`` (CUB-200, train /
test), ``oxford_flowers102`` (train+validation as the few-shot pool / test),
``i_naturalist2018`` (train / validation), or any other tfds image dataset with a ClassLabel
("name", "name/config", "name:version"; train / test, or train / validation for those in
VALIDATION_ONLY). Where ``configs/data/<name>.py`` exists its data section (splits, crop
fraction, class filter) is used as it is; any other name gets ``data.default_config()``
with those splits. Nothing is downloaded: an unprepared dataset fails before the model loads,
naming the ``tfds build`` command.

What runs (docs/evaluation.md): starting from ``leave_one_out.evaluate.default_config()``
(every field documented in leave_one_out/evaluate/), with the whole of both splits
(``dataset.num_train`` / ``num_test`` = 0):

* probe: MoCo's linear classification protocol (``probe.protocol = "moco"``: SGD lr 30,
  momentum 0.9, batch 256, 100 epochs, x0.1 at 60 and 80, random-resized crop + flip on device,
  frozen encoder, centre crop at test); ``--config.probe.epochs=N`` shortens it (the rate
  decays at 60% and 80% of the epochs),
  ``--config.probe.protocol=fast`` is the seconds-long probe on cached features;
* rotation: every image at 0/90/180/270, the same protocol;
* kNN, K-shot (5, 10; 10 trials), augmentation sensitivity;
* corruption: ImageNet-C (``imagenet_c``) for imagenet100 (the ImageNet-C configs must be
  prepared, ``--config.imagenet_c.data_dir=...``; ``--config.imagenet_c.enabled=False`` skips
  it), the on-device synthetic corruptions (``corruption``) for every other dataset.

Images: shorter side resized to S / ``dataset.data.eval_crop_fraction``, centre crop S x S on
the host (tf.data), S = the model's input size; the MoCo protocol's training images are read
again as squares (shorter side to S / crop fraction, centre square) to cut random crops from.
Host memory: both splits as uint8 (ImageNet-100 at 224 px: 19 GB train + 0.75 GB test, plus
25 GB of 256-px training squares for the MoCo protocol). Every host reads the whole split.
Writes ``<workdir>/evaluation_<name>_moco.json`` (``_moco``: the probe's protocol; with
``--config.probe.protocol=fast`` ``evaluation_<name>.json``) and ``sensitivity_<name>.png``
(one file per dataset) and prints the table. Every field is validated at start-up (a ValueError naming
``eval_config.<field>``).
"""

import os
import re

from leave_one_out import config as config_lib
from leave_one_out import data as data_lib
from leave_one_out import evaluate

DATA_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
# tfds datasets evaluated on "validation" (no labelled test split); any other name: "test".
VALIDATION_ONLY = (
  "imagenet2012",
  "imagenet2012_subset",
  "imagenet_resized",
  "imagenette",
  "food101",
  "i_naturalist2017",
  "i_naturalist2021",
  "places365_small",
)
IMAGENET_CLASSES = ("imagenet100", "imagenet2012")  # ImageNet-C is their corruption protocol
USAGE = (
  "configs/eval/tfds.py takes a tfds dataset name, e.g. "
  "--config=configs/eval/tfds.py:caltech_birds2011"
)


def data_config(name: str, arg=None):
  """``configs/data/<name>.py``'s ``get_config(arg)`` (a data section), or None if none."""
  path = os.path.join(DATA_CONFIGS, f"{name}.py")
  if not os.path.exists(path):
    return None
  return config_lib.load_file(path, arg)


def eval_config(data, tag: str):
  """The evaluation config of the data section ``data``; ``tag`` names the output files."""
  c = evaluate.default_config()
  tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", tag).strip("_") or "data"
  c.results_file = f"evaluation_{tag}.json"
  c.heatmap_file = f"sensitivity_{tag}.png"
  c.dataset.data = data  # a data section (docs/data.md); its image_size, num_examples,
  #   shuffle_buffer, decode_threads and host_prefetch are pretraining settings, unused here
  c.dataset.num_train = 0  # the whole training split
  c.dataset.num_test = 0  # the whole test split
  c.probe.protocol = "moco"  # MoCo's linear classification protocol (leave_one_out/evaluate/
  #                            moco_linear.py); the rotation probe follows it
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
    raise ValueError(
      "ImageNet-C is the corruption protocol of ImageNet-100 (eval_config."
      "imagenet_c, on there): --config=configs/eval/tfds.py:imagenet100"
    )
  data = data_config(base)
  if data is None:
    data = data_lib.default_config()
    data.train_split = "train"
    # A missing split is an error listing the dataset's splits; override with
    # --config.dataset.data.eval_split=<split>.
    data.eval_split = "validation" if base in VALIDATION_ONLY else "test"
  data.name = arg  # keeps a "/config" or ":version" suffix
  c = eval_config(data, arg)
  if base in IMAGENET_CLASSES:
    c.imagenet_c.enabled = True  # Hendrycks & Dietterich's benchmark on these classes ...
    c.corruption.enabled = False  # ... instead of the synthetic stand-ins
  return c
