r"""MoCo + CASSLE on ImageNet-100 with ResNet-50: CASSLE's setting (docs/objectives.md).

Command (from the repository root; data as in configs/looc_in100_r50.py and docs/data.md):

  python -m leave_one_out.main --config=configs/cassle_in100_r50.py --workdir=/ckpt/cassle \
      --config.data.data_dir=/data/tensorflow_datasets

Settings, and where they come from (the CASSLE authors' code and README, gmum/CASSLE@b555c10,
whose code is byte-identical to mprzewie/AugSelf@0e55f0f; its MoCo is AugSelf's):

- from the README's ImageNet-100 command: ResNet-50, batch 256, 500 epochs, lr 0.03 per 256,
  weight decay 1e-4, the descriptor groups crop, color, color_diff, blur, grayscale (13
  values), an embedding MLP of depth 6 and width 64 concatenated to the projector's input;
- from its code (AugSelf's MoCo): SGD momentum 0.9, cosine schedule without warm-up,
  temperature 0.2, key encoder EMA 0.999 (the embedding MLP included), a queue of 65,536,
  BatchNorm over the whole batch (no shuffle-BN), MoCo v2's augmentations; both encoders
  conditioned, each view on its own descriptor;
- different from its code: the projection head has no BatchNorm (this project's MoCo v2 head:
  Linear(2048 + 64, 2048) - ReLU - Linear(2048, 128)), the queue holds keys (CASSLE's MoCo
  enqueues the queries), the jitter order is drawn per image (kornia 0.4.1: per batch), crop
  boxes are continuous.

Cost per image: MoCo's plus the embedding MLP on 13 values per view and, for color_diff, two
more crop-and-colour renders of every view (no network pass).
"""

from leave_one_out import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.load_file("moco_in100_r50.py", relative_to=__file__)
  c.loss.queue_size = 65_536  # AugSelf's MoCo, which CASSLE's is: K = 65,536
  c.model.key_bn = "global"  # SyncBN over the batch, no shuffle-BN
  c.objectives.cassle.enabled = True
  c.objectives.cassle.groups = ("blur", "color", "color_diff", "crop", "grayscale")
  c.objectives.cassle.width = 64
  c.objectives.cassle.depth = 6
  return c
