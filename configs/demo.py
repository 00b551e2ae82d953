r"""LooC demo: real handwritten digits on CPU, in minutes: the class is learned and both spaces
do their job.

Command (fresh machine, from the repository root):

  pip install -e . && python -m leave_one_out.main --config=configs/demo.py --workdir=/tmp/looc_demo

Hardware: 2 CPU cores. Runtime and results: docs/demo.md (measured figures, with the
machine and the load they were measured under). Running the command again resumes from the
last checkpoint (and, once finished, only evaluates again).

What it does: LooC with two augmentation-specific spaces (colour and rotation) on scikit-learn's
handwritten digits drawn at a random size, position and ink hue on a dark canvas
(leave_one_out/data/digits.py, split by source image; scikit-learn ships the digits, nothing is
downloaded): q, k_0, k_colour, k_rotation per image, in-batch negatives, EMA key encoder, an
eighth-width ResNet-10 on 24-px views of 32-px canvases; then leave_one_out.evaluate on the final
checkpoint, with the same network at random init beside it (BatchNorm statistics calibrated on
training views) so that the table shows what was learned.

What it shows (docs/demo.md): the digit class probe far above the same network at random
init, both spaces' own-view top-1 (q picks, among its own image's keys, the one sharing the
space's augmentation; chance 33%) high, and in the sensitivity matrix each space most sensitive
to its own augmentation.

Why these settings: the colour jitter shifts hue by at most 0.05 turns and never turns a view
grey (MoCo v2: 0.1 turns and 20% grayscale): k_colour shares q's exact colour jitter, so a
rotation space that reads colour prefers it to k_rotation, and with MoCo v2's jitter that
shortcut takes more steps to overcome than a CPU demo has (docs/synthetic.md, "The demo", found
the same on the shapes). Horizontal flip is off: a mirrored 2, 3, 4, 5, 6, 7 or 9 is not that
digit. Blur is off (invisible at 24 px) and crops keep at least half the canvas, so the digit
stays in view.

Overrides: any field, e.g. ``--config.train.num_steps=300 --config.augment.spaces='("rotation",)'``.
"""

from leave_one_out import config as config_lib


def get_config(arg=None):
  """The recipe (``config.default_config()``) shrunk to the digits and a CPU."""
  del arg
  c = config_lib.default_config()
  c.data.name = "digits"
  c.data.image_size = 32
  c.data.num_train = 4096
  c.augment.image_size = 24
  c.augment.spaces = ("color", "rotation")
  c.augment.flip.enabled = False  # a mirrored digit is another symbol (docstring)
  c.augment.blur.enabled = False  # MoCo v2's sigma, scaled from 224 px, is invisible at 24 px
  c.augment.crop.scale = (0.5, 1.0)  # the digit stays in view
  c.augment.color.hue = 0.05  # MoCo v2: 0.1 (docstring)
  c.augment.color.gray_prob = 0.0  # MoCo v2: 0.2 (docstring)
  c.model.architecture = "resnet10"
  c.model.width = 8
  c.model.head_hidden = 64
  c.model.dtype = "float32"
  c.loss.queue_size = 0  # in-batch negatives only
  c.train.batch_size = 128
  c.train.num_epochs = 10
  c.train.num_steps = 2000
  c.train.base_lr = 0.2
  c.train.weight_decay = 5e-4
  c.train.weight_decay_mask = "no_bn_bias"  # BatchNorm parameters and biases are not decayed
  c.train.warmup_epochs = 1.0
  c.train.ema_momentum = 0.99
  c.loss.temperature = 0.2
  c.log_every_steps = 100
  c.checkpoint_every_steps = 500
  c.keep_every_steps = 0
  return c
