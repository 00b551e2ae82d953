r"""MoCo + AugSelf on the embedded dataset: configs/demo.py's data, model and budget, on CPU.

Command (from the repository root):

  python -m leave_one_out.main --config=configs/augself.py --workdir=/tmp/augself_demo
  # AugSelf beside LooC's colour and rotation spaces instead of MoCo:
  python -m leave_one_out.main --config=configs/augself.py:looc --workdir=/tmp/augself_looc

What it does: configs/demo.py with no augmentation space (MoCo: q and k_0 per image) and
AugSelf's ImageNet-100 objective (docs/objectives.md): heads on the concatenated backbone
features of q and k_0 regress the difference of their crop boxes and colour-jitter factors, each
group's loss weighted 0.5. The progress line shows ``augself <loss> (crop .., color ..)``; the
evaluation table at the end is the demo's. ``--config.train.num_steps`` shortens it.
"""

from leave_one_out import config as config_lib


def get_config(arg=None):
  """``arg``: "" (MoCo + AugSelf) or "looc" (LooC with spaces colour and rotation + AugSelf)."""
  if arg not in (None, "", "looc"):
    raise ValueError(f"configs/augself.py takes '' or 'looc', got {arg!r}")
  c = config_lib.load_file("demo.py", relative_to=__file__)
  if arg != "looc":
    c.augment.spaces = ()
  c.objectives.augself.weight = 0.5  # AugSelf, ImageNet-100: 0.5 for crop and for colour
  c.objectives.augself.groups = ("crop", "color")
  return c
