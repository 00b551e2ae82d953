"""iNaturalist 2018 (tfds i_naturalist2018): large-scale fine-grained transfer, linear probe.

The paper's "iNat-1k" is iNaturalist 2019 (1,010 species), which tensorflow-datasets does not
provide. The releases in tfds 4.9 are i_naturalist2017 (5,089 classes), i_naturalist2018
(8,142 classes: 437,513 train, 24,426 validation images) and i_naturalist2021 (10,000 classes;
its builder cannot even be constructed from the installed tfds 4.9.10 package, whose class-name
file is missing). This config uses i_naturalist2018, the closest release that tfds can build;
numbers are therefore not directly comparable with the paper's. For iNat 2019 itself, unpack it
as an image folder (root/train/<class>/*.jpg, root/val/<class>/*.jpg) and use
configs/data/folder.py.

Prepare once (about 200 GB download, several hours): tfds build i_naturalist2018 --data_dir=<dir>.
Linear probe: train split for the classifier, validation split for top-1 (the test split has no
labels).
"""

from leave_one_out import data


def get_config(arg=None):
  del arg
  d = data.default_config()
  d.name = "i_naturalist2018"
  d.data_dir = ""
  d.train_split = "train"
  d.eval_split = "validation"
  d.image_size = 256
  d.eval_crop_fraction = 0.875
  return d
