"""ImageNet-100 (the CMC 100-class subset of ImageNet-1k): pretraining set and linear-probe set.

tfds imagenet2012 restricted to leave_one_out/imagenet100.py's 100 WordNet ids, relabelled 0..99
in sorted wnid order: 126,689 training and 5,000 validation images. Prepare ImageNet once
(manual download): tfds build imagenet2012 --data_dir=<dir> --manual_dir=<dir with the tars>.
Linear probe protocol: train split for the classifier, validation split for top-1/top-5.
"""

from leave_one_out import data


def get_config(arg=None):
  del arg
  d = data.default_config()
  d.name = "imagenet100"
  d.data_dir = ""  # "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
  d.train_split = "train"
  d.eval_split = "validation"
  d.image_size = 256
  d.eval_crop_fraction = 0.875  # resize 256, centre crop 224
  return d
