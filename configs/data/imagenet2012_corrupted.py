"""ImageNet-C (tfds imagenet2012_corrupted), one corruption and severity: a data section.

``configs/data/imagenet2012_corrupted.py:<corruption>_<severity>``, e.g. ``:gaussian_noise_3``
(the default), with a corruption of Hendrycks & Dietterich's 15 (or tfds's 4 extra ones) and a
severity 1-5. Each is the 50,000-image ImageNet validation split, corrupted and stored as
224 x 224 centre crops (so evaluation only resizes: crop fraction 1.0); keeping the ImageNet-100
classes (relabelled 0..99 in sorted wnid order, like configs/data/imagenet100.py) leaves 5,000.

The benchmark as a whole (every corruption and severity, the IN-100 linear classifier applied,
errors, means per family, mCE) is the ``imagenet_c`` evaluator, on in
``configs/eval/tfds.py:imagenet100``; this file is for reading one config, e.g. with
``leave_one_out.data.create_eval_source``. Prepare each config once (it corrupts the ImageNet
validation tar; manual download):
  tfds build imagenet2012_corrupted --config=gaussian_noise_3 --data_dir=<dir> \
      --manual_dir=<dir with the tars>
"""

from leave_one_out.evaluate import imagenet_c


def get_config(arg=None):
  """``arg``: "<corruption>_<severity>", e.g. "gaussian_noise_3" (the default)."""
  arg = arg or "gaussian_noise_3"
  name, _, severity = arg.rpartition("_")
  if (
    name not in imagenet_c.CORRUPTIONS + imagenet_c.EXTRA
    or severity not in "12345"
    or len(severity) != 1
  ):
    raise ValueError(
      f"configs/data/imagenet2012_corrupted.py takes <corruption>_<1..5> with a "
      f"corruption in {imagenet_c.CORRUPTIONS + imagenet_c.EXTRA}, got {arg!r}"
    )
  return imagenet_c.data_section(name, int(severity), classes="imagenet100")
