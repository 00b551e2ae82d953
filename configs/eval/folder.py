r"""Evaluation on an image folder with the paper's protocols, one table.

  python -m leave_one_out.evaluate --workdir=/ckpt/looc --config=configs/eval/folder.py:/data/mine
      [--config.dataset.data.eval_split=test] [--config.probe.epochs=10]

``arg`` (after the colon) is the folder root: ``<root>/<split>/<class>/**/<image>`` (jpg, jpeg,
png, bmp, gif, webp, case-insensitive; local or gs://), with the splits of
configs/data/folder.py: ``train`` (the probes' training set, the kNN bank and the few-shot pool)
and ``validation``, which also finds ``val/`` (every reported accuracy;
``--config.dataset.data.eval_split=test`` if yours is named so). Classes are
the sorted subdirectory names of the training split, and the evaluation split is labelled with
that list (a class directory only in the evaluation split is an error naming it);
``--config.dataset.data.classes=<file>`` keeps only the classes listed in a text file.
Unreadable images are skipped and counted (``dataset.data.skip_corrupt``).

Everything else is configs/eval/tfds.py's ``eval_config``: MoCo's linear protocol for the probe
and the rotation probe (100 epochs; ``--config.probe.epochs=N``), kNN, K-shot (K must be below
every class's image count, or ``--config.fewshot.small_classes=skip``), the synthetic
corruptions and augmentation sensitivity. Writes ``<workdir>/evaluation_folder_<root
name>_moco.json`` (``_moco``: the probe's protocol) and ``sensitivity_folder_<root name>.png``
and prints the table (columns ``dim | top-1 | top-5 | rotation | kNN | 5-shot | 10-shot |
corrupt``; top-5 above 5 classes only).
"""

import os

from leave_one_out import config as config_lib


def get_config(arg=None):
  root = arg or ""  # "" fails validation: eval_config.dataset.data.data_dir must name the root
  data = config_lib.load_file("../data/folder.py", root, relative_to=__file__)  # name "folder",
  #   data_dir = root, train_split "train", eval_split "val", classes "", eval_crop_fraction
  #   0.875 (every data field is documented in leave_one_out/data/__init__.py and docs/data.md)
  name = os.path.basename(os.path.normpath(root)) if root else "folder"
  tfds_eval = config_lib.load_module("tfds.py", relative_to=__file__)
  return tfds_eval.eval_config(data, f"folder_{name}")
