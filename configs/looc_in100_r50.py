r"""LooC on ImageNet-100 with ResNet-50: the paper's recipe (docs/method.md, "Training recipe").

Command (from the repository root; ImageNet prepared once with tfds, see docs/data.md):

  python -m leave_one_out.main --config=configs/looc_in100_r50.py --workdir=/ckpt/looc_in100 \
      --config.data.data_dir=/data/tensorflow_datasets

  # with the texture space as well (n = 3, five views per image):
  python -m leave_one_out.main --config=configs/looc_in100_r50.py:texture --workdir=...

Data: ImageNet-100 = tfds imagenet2012 restricted to the 100 classes of Tian et al. 2019 (CMC,
leave_one_out/data/pipeline/classes.py): 126,689 training images, 494 steps of 256 per epoch. Prepare
ImageNet once (manual download of ILSVRC2012_img_{train,val}.tar, about 150 GB, a few hours):

  tfds build imagenet2012 --data_dir=/data/tensorflow_datasets --manual_dir=/data/ilsvrc

Training never downloads. The view reads every ImageNet record and keeps one in ten; on slow
storage export the 100 classes once to an image folder (leave_one_out.data.tfds.export_image_folder,
about 14 GB) and add --config.data.name=folder --config.data.data_dir=<that folder>.

Hardware: one accelerator host. The batch (256) is global, so the same command runs on 1, 8 or more
devices (and hosts: add --distributed, or use launch/tpu.sh). Expected runtime (an estimate from
FLOPs and typical ResNet-50 throughput, not a measurement): LooC with n = 2 costs about 2x a
supervised ResNet-50 step per image (one query pass with gradients, three key passes), so 500
epochs (63M images) take roughly 10-12 hours on one H100 in bfloat16, 2-3 hours on 8; MoCo v2
(configs/moco_in100_r50.py) about two thirds of that. The host must decode and resize about
1,500-2,000 images/s per H100: about 4-6 CPU cores per GPU at the rates measured by `python -m
leave_one_out.benchmarks --what=input` (docs/data.md).

Recipe: ResNet-50, 224 px views, batch 256, 500 epochs, SGD momentum 0.9, lr 0.03 per 256 with a
cosine schedule (MoCo v2; a public reproduction steps x0.1 at epochs 300 and 400:
--config.train.schedule=step), weight decay 1e-4 on every parameter (MoCo v2), temperature 0.2,
key encoder EMA 0.999, a queue of 16,384 negatives per embedding space (--config.loss.queue_size=0
for in-batch negatives only) with MoCo v2's shuffle-BN: BatchNorm statistics over 8 groups of 32
images, the key batch shuffled across the groups (model.key_bn, model.bn_groups; with
queue_size=0 "auto" turns to global BatchNorm). Rotation: k != 0 with probability 0.75, uniform
over the four angles (augment.rotation.prob; the paper's distribution is unconfirmed). Spaces:
colour and rotation (LooC's default); ":texture" adds the texture space.
"""

from leave_one_out import config as config_lib


def get_config(arg=None):
  """``arg``: "" (spaces colour, rotation) or "texture" (colour, rotation, texture).

  ``config.default_config()`` is this recipe; only the texture variant changes anything.
  """
  if arg not in (None, "", "texture"):
    raise ValueError(f"configs/looc_in100_r50.py takes '' or 'texture', got {arg!r}")
  c = config_lib.default_config()
  if arg == "texture":
    c.augment.texture.enabled = True
    c.augment.spaces = ("color", "rotation", "texture")
  return c
