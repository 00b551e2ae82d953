r"""MoCo + AugSelf on ImageNet-100 with ResNet-50: AugSelf's setting (docs/objectives.md).

Command (from the repository root; data as in configs/looc_in100_r50.py and docs/data.md):

  python -m leave_one_out.main --config=configs/augself_in100_r50.py --workdir=/ckpt/augself \
      --config.data.data_dir=/data/tensorflow_datasets

Settings, and where they come from (the AugSelf authors' code, hankook/AugSelf@c131db6; its
MoCo command for ImageNet-100 is in the CASSLE README, gmum/CASSLE@b555c10, "To train AugSelf"):

- from AugSelf's code and that command: ResNet-50, 224-px views, batch 256, 500 epochs, SGD
  momentum 0.9, lr 0.03 per 256 with a cosine schedule and no warm-up, weight decay 1e-4,
  temperature 0.2, key encoder EMA 0.999, a queue of 65,536, BatchNorm over the whole batch
  (SyncBN, no shuffle-BN), MoCo v2's augmentations (crop 0.2-1, flip, jitter 0.4/0.4/0.4/0.1
  with p 0.8, grayscale 0.2, blur 0.1-2.0 with p 0.5, no rotation); AugSelf's crop and colour
  heads (512 wide), each weighted 0.5, with its code's flip handling and tanh;
- inferred: nothing else. The CASSLE authors' own AugSelf scripts used lr 0.05 instead of the
  README's 0.03 (--config.train.base_lr=0.05);
- different from AugSelf's code: the projection head has no BatchNorm (this project's MoCo v2
  head), the queue holds keys (AugSelf's MoCo enqueues the queries), the jitter order is drawn
  per image (kornia 0.4.1: per batch) and crop boxes are continuous (torchvision rounds to
  pixels).

Cost per image: MoCo's (one query pass with gradients, one key pass) plus AugSelf's heads on
2 x 2 x 2048 features, under 1% of the step.
"""

from leave_one_out import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.load_file("moco_in100_r50.py", relative_to=__file__)
  c.loss.queue_size = 65_536  # AugSelf's MoCo: K = 65,536
  c.model.key_bn = "global"  # SyncBN over the batch, no shuffle-BN
  c.objectives.augself.weight = 0.5
  c.objectives.augself.groups = ("crop", "color")
  c.objectives.augself.hidden = 512
  c.objectives.augself.crop_mirror = "first"
  return c
