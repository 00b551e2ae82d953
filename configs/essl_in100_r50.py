r"""MoCo v2 + E-SSL on ImageNet-100 with ResNet-50 (docs/objectives.md).

Command (from the repository root; data as in configs/looc_in100_r50.py and docs/data.md):

  python -m leave_one_out.main --config=configs/essl_in100_r50.py --workdir=/ckpt/essl \
      --config.data.data_dir=/data/tensorflow_datasets

E-SSL (rdangovs/essl@70b2cd0) has no MoCo and no ImageNet-100 run, so this is MoCo v2's
ImageNet-100 recipe (configs/moco_in100_r50.py, the baseline of LooC's tables) with E-SSL's
ImageNet rotation prediction added:

- from E-SSL's ImageNet code (E-SimCLR): one extra 96-px view per image from a crop of 0.05-0.14
  of its area, blur probability 0.1 (sigma 0.1-2.0 in its own pixels), all four rotations of it
  through the online backbone in a forward pass of their own, the rotation head 2048-2048-128-4
  with LayerNorm, weight 0.4;
- inferred: the weight 0.4 for MoCo (E-SSL's for SimCLR, whose InfoNCE has MoCo v2's
  temperature 0.2), and the rest of the recipe (MoCo v2's: batch 256, 500 epochs, SGD lr 0.03
  per 256 cosine, weight decay 1e-4, queue 16,384 with shuffle-BN);
- different from E-SSL's code: the rotated view's colour jitter is the run's (MoCo v2's
  saturation 0.4; E-SSL's BYOL-style views use 0.2), and its BatchNorm groups are the query's
  (shuffle-BN's 8 groups of the batch; E-SSL: SyncBN over all 4B rotated images).

Cost per image: MoCo's (one query pass with gradients, one key pass) plus 4 forward and backward
passes of a 96-px view: 4 x (96 / 224)^2 = 0.73 of a query pass.
"""

from leave_one_out import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.load_file("moco_in100_r50.py", relative_to=__file__)
  c.objectives.essl.weight = 0.4
  c.objectives.essl.image_size = 96
  c.objectives.essl.crop_scale = (0.05, 0.14)
  c.objectives.essl.blur_prob = 0.1
  c.objectives.essl.bottleneck = 128
  return c
