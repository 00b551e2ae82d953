r"""MoCo v2 on ImageNet-100 with ResNet-50: the baseline of LooC's tables (no augmentation spaces).

Command (from the repository root; data as in configs/looc_in100_r50.py and docs/data.md):

  python -m leave_one_out.main --config=configs/moco_in100_r50.py --workdir=/ckpt/moco_in100 \
      --config.data.data_dir=/data/tensorflow_datasets

  # "MoCo v2 + rotation" (rotation as a plain augmentation, no space of its own):
  python -m leave_one_out.main --config=configs/moco_in100_r50.py:rotation --workdir=...

This is the LooC code with n = 0 (docs/method.md): q and one key k_0 per image, one embedding space,
the loss is exactly MoCo's InfoNCE. Same recipe as configs/looc_in100_r50.py: ResNet-50, 224 px,
batch 256, 500 epochs, SGD lr 0.03 per 256 (cosine), weight decay 1e-4 on every parameter,
temperature 0.2, EMA 0.999, queue 16,384 with shuffle-BN (8 BatchNorm groups of 32).
Augmentations: MoCo v2's (random-resized crop 0.2-1, flip, colour jitter 0.4/0.4/0.4/0.1 with
p 0.8, grayscale 0.2, blur 0.1-2.0 with p 0.5); no rotation unless ":rotation" is given.

Hardware and expected runtime: one accelerator host; roughly 6-8 hours on one H100 in bfloat16
(about 1.3x a supervised ResNet-50 step per image: one query pass with gradients, one key pass);
an estimate, not a measurement. The host must supply about 2,500 images/s per H100.
"""

from leave_one_out import config as config_lib


def get_config(arg=None):
  """``arg``: "" (MoCo v2) or "rotation" (MoCo v2 + rotation as a common augmentation)."""
  if arg not in (None, "", "rotation"):
    raise ValueError(f"configs/moco_in100_r50.py takes '' or 'rotation', got {arg!r}")
  c = config_lib.load_file("looc_in100_r50.py", relative_to=__file__)
  c.augment.spaces = ()
  c.augment.rotation.enabled = arg == "rotation"
  c.augment.texture.enabled = False
  return c
