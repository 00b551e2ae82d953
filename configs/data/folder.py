"""A user image folder: ``<root>/<split>/<class>/**/<image>`` (jpg, jpeg, png, bmp, gif, webp).

``configs/data/folder.py:<root>`` (or set ``data_dir`` afterwards). Splits: ``train`` and the
data section's default ``validation``, which also finds a ``val/`` folder (torchvision's
ImageNet layout). Classes are the sorted subdirectory names of the training split (labels
0..K-1; every image below a class folder, at any depth); evaluation splits use the same labels;
a split whose images lie at its top level is one unlabelled class. Unreadable files are skipped
and counted (``skip_corrupt``). Works for local paths and gs://. Pretraining on a folder:
``--config.data.name=folder --config.data.data_dir=<root>``.
"""

from leave_one_out import data


def get_config(arg=None):
  d = data.default_config()
  d.name = "folder"
  d.data_dir = arg or ""
  d.train_split = "train"
  d.eval_split = "validation"  # the default; a val/ folder is found too
  d.image_size = 256
  d.eval_crop_fraction = 0.875
  d.classes = ""  # or "imagenet100" / a class-list file, to keep only some class directories
  return d
