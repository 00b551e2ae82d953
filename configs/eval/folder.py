r"""Evaluation on an image folder: every protocol, one table.

  python -m leave_one_out.evaluate --workdir=/ckpt/looc --config=configs/eval/folder.py:/data/mine
      [--config.dataset.data.eval_split=validation]

``arg`` (after the colon) is the folder root: ``<root>/<split>/<class>/*.{jpg,jpeg,png}``
(case-insensitive; local or gs://), with the splits of configs/data/folder.py: ``train`` (the
probes' training set, the kNN bank and the few-shot pool) and ``val`` (every reported accuracy;
``--config.dataset.data.eval_split=validation`` or ``test`` if yours is named so). Classes are
the sorted subdirectory names of the training split, and the evaluation split is labelled with
that list (a class directory only in the evaluation split is an error naming it);
``--config.dataset.data.classes=<file>`` keeps only the classes listed in a text file.
Unreadable images are skipped and counted (``dataset.data.skip_corrupt``).

Images: shorter side resized to S / ``dataset.data.eval_crop_fraction`` (0.875), centre crop
S x S on the host, S = the model's input size. Writes ``<workdir>/evaluation_folder_<root
name>.json`` and ``sensitivity_folder_<root name>.png`` and prints the table (rows: feature
kinds; columns ``dim | top-1 | top-5 | rotation | kNN | 5-shot | 10-shot | corrupt``).
Few-shot needs K training images of every class (``fewshot.small_classes="skip"`` leaves the
smaller classes out instead of stopping).

Every other knob, its default and its meaning are those of configs/eval/tfds.py
(``eval_config`` there); override any on the command line, e.g.
``--config.dataset.num_train=5000``. Every field is validated at start-up (a ValueError naming
``eval_config.<field>``).
"""

import os

from leave_one_out import config as config_lib


def get_config(arg=None):
  root = arg or ""  # "" fails validation: eval_config.dataset.data.data_dir must name the root
  data = config_lib.load_file("../data/folder.py", root, relative_to=__file__)  # name "folder",
  #   data_dir = root, train_split "train", eval_split "val", classes "", eval_crop_fraction
  #   0.875 (every data field is documented in leave_one_out/data/config.py and docs/data.md)
  name = os.path.basename(os.path.normpath(root)) if root else "folder"
  tfds_eval = config_lib.load_module("tfds.py", relative_to=__file__)
  return tfds_eval.eval_config(data, f"folder_{name}")
