r"""MoCo + E-SSL on the digits: configs/demo.py's data, model and budget, on CPU.

Command (from the repository root):

  python -m leave_one_out.main --config=configs/essl.py --workdir=/tmp/essl_demo
  # E-SSL beside LooC's colour and rotation spaces instead of MoCo:
  python -m leave_one_out.main --config=configs/essl.py:looc --workdir=/tmp/essl_looc

What it does: configs/demo.py with no augmentation space (MoCo: q and k_0 per image) and
E-SSL's four-fold rotation prediction (docs/objectives.md): every image gets one more view,
12 px (half the 24-px views) from a crop of 0.2-1.0 of its area, E-SSL's CIFAR-10 setting; all
four rotations of it go through the online backbone and a head classifies the rotation, weight
0.4 (E-SSL's). The progress line shows ``essl <loss>/<top-1>``; the evaluation table at the end
is the demo's. ``--config.train.num_steps`` shortens it.

On the digits, over six seeds at the claims experiment's budget, beside LooC: docs/claims.md,
"The augmentation-aware family". Recorded on 2026-12-06, when configs/demo.py was still the
embedded shapes demo (one seed, shapes lit from above; a record of that run, not of this
config on the digits):
runtime 11 min 7 s on 2 cores of an Intel Xeon VM shared with other jobs (load average about
4.5; 2026-12-06, /usr/bin/time: 571 s user CPU, the demo's LooC run 598 s), 2,000 steps at about
410 img/s (the 12-px rotated views are slow on a CPU: BENCHMARKS.md), then 30 s of evaluation.
What that run printed (one seed: a record, not a comparison; docs/objectives.md):
- last progress line: ``invariant 1.499/76% | essl 0.008/100%`` (the light from above makes
  the rotation easy to tell);
- linear probes on the backbone: shape 39.8%, colour 100.0%, texture 57.6%, rotation 92.8%;
  sensitivity of the backbone: crop 0.04, flip 0.02, colour 0.02, rotation 0.03.
"""

from leave_one_out import config as config_lib


def get_config(arg=None):
  """``arg``: "" (MoCo + E-SSL) or "looc" (LooC with spaces colour and rotation + E-SSL)."""
  if arg not in (None, "", "looc"):
    raise ValueError(f"configs/essl.py takes '' or 'looc', got {arg!r}")
  c = config_lib.load_file("demo.py", relative_to=__file__)
  if arg != "looc":
    c.augment.spaces = ()
  c.objectives.essl.weight = 0.4  # E-SimCLR's weight (ImageNet and CIFAR-10)
  c.objectives.essl.image_size = 12  # half the views' side, as E-SSL's CIFAR-10 (16 beside 32)
  c.objectives.essl.crop_scale = (0.2, 1.0)  # E-SSL's CIFAR-10 rotation view
  return c
