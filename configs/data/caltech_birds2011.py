"""CUB-200-2011 (tfds caltech_birds2011): fine-grained transfer, linear probe on frozen features.

200 bird species; 5,994 train and 5,794 test images (the official split). Prepare once (about
1.2 GB download): tfds build caltech_birds2011 --data_dir=<dir>. The paper reports top-1 and
top-5 of a linear classifier trained on the train split, on the test split.
"""

from leave_one_out import data


def get_config(arg=None):
  del arg
  d = data.default_config()
  d.name = "caltech_birds2011"
  d.data_dir = ""
  d.train_split = "train"
  d.eval_split = "test"
  d.image_size = 256
  d.eval_crop_fraction = 0.875
  return d
