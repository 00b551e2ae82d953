"""ImageNet-C (tfds imagenet2012_corrupted) on the ImageNet-100 classes: robustness.

One corruption and severity per config: ``configs/data/imagenet2012_corrupted.py:<name>_<severity>``
with ``<name>`` in CORRUPTIONS and severity 1-5, e.g. ``:gaussian_noise_3`` (the default). Each is
the 50,000-image ImageNet validation split, corrupted; keeping the 100 ImageNet-100 classes
(relabelled 0..99 like configs/data/imagenet100.py) leaves 5,000 images. The images are stored
as 224 x 224 centre crops already, so evaluation only resizes (crop fraction 1.0).

Protocol: the ImageNet-100 linear probe (trained on clean ImageNet-100 train features) is applied
to the corrupted images; report top-1 per corruption and severity, and the mean. Prepare each
config once (it corrupts the ImageNet validation tar; manual download):
  tfds build imagenet2012_corrupted/gaussian_noise_3 --data_dir=<dir> --manual_dir=<dir with tars>
"""

from leave_one_out.data import config as data_config

CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression")
# tfds also has the four "extra" corruptions: gaussian_blur, saturate, spatter, speckle_noise.


def get_config(arg=None):
  """``arg``: "<corruption>_<severity>", e.g. "gaussian_noise_3" (the default)."""
  arg = arg or "gaussian_noise_3"
  name, _, severity = arg.rpartition("_")
  extra = ("gaussian_blur", "saturate", "spatter", "speckle_noise")
  if name not in CORRUPTIONS + extra or severity not in ("1", "2", "3", "4", "5"):
    raise ValueError(f"configs/data/imagenet2012_corrupted.py takes <corruption>_<1..5> with a "
                     f"corruption in {CORRUPTIONS + extra}, got {arg!r}")
  d = data_config.default_config()
  d.name = f"imagenet2012_corrupted/{arg}"
  d.data_dir = ""
  d.classes = "imagenet100"  # the 100 classes, relabelled 0..99 in sorted wnid order
  d.train_split = "validation"  # the only split
  d.eval_split = "validation"
  d.image_size = 224
  d.eval_crop_fraction = 1.0  # stored as 224 x 224 centre crops
  return d
