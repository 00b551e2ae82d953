r"""MoCo + AugSelf on the digits: configs/demo.py's data, model and budget, on CPU.

Command (from the repository root):

  python -m leave_one_out.main --config=configs/augself.py --workdir=/tmp/augself_demo
  # AugSelf beside LooC's colour and rotation spaces instead of MoCo:
  python -m leave_one_out.main --config=configs/augself.py:looc --workdir=/tmp/augself_looc

What it does: configs/demo.py with no augmentation space (MoCo: q and k_0 per image) and
AugSelf's ImageNet-100 objective (docs/objectives.md): heads on the concatenated backbone
features of q and k_0 regress the difference of their crop boxes and colour-jitter factors, each
group's loss weighted 0.5. The progress line shows ``augself <loss> (color .., crop ..)``; the
evaluation table at the end is the demo's. ``--config.train.num_steps`` shortens it.

On the digits, over six seeds at the claims experiment's budget, beside LooC: docs/claims.md,
"The augmentation-aware family". Recorded on 2026-12-06, when configs/demo.py was still the
embedded shapes demo (one seed, shapes lit from above; a record of that run, not of this
config on the digits):
runtime 9 min 9 s on 2 cores of an Intel Xeon VM shared with other jobs (load average 3-4.7;
2026-12-06, /usr/bin/time: 329 s user CPU, the demo's LooC run 598 s), 2,000 steps at about 750
img/s, then 30 s of evaluation. What that run printed (one seed: a record, not a comparison;
docs/objectives.md):
- last progress line: ``invariant 1.705/64% | augself 0.070 (color 0.061, crop 0.009)``;
- linear probes on the backbone: shape 42.8%, colour 100.0%, texture 51.0%, rotation 70.8%;
  sensitivity of the backbone: crop 0.04, flip 0.01, colour 0.03, rotation 0.02.
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
