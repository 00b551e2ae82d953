r"""LooC on ImageNet-100 with ResNet-50: the paper's recipe (METHOD.md, "Training recipe").

Command (from the repository root; ImageNet prepared once with tfds, see docs/data.md):

  python -m leave_one_out.main --config=configs/looc_in100_r50.py --workdir=/ckpt/looc_in100 \
      --config.data.data_dir=/data/tensorflow_datasets

  # with the texture space as well (n = 3, five views per image):
  python -m leave_one_out.main --config=configs/looc_in100_r50.py:texture --workdir=...

Data: ImageNet-100 = tfds imagenet2012 restricted to the 100 classes of Tian et al. 2019 (CMC,
leave_one_out/imagenet100.py): 126,689 training images, 494 steps of 256 per epoch. Prepare
ImageNet once (manual download of ILSVRC2012_img_{train,val}.tar, about 150 GB, a few hours):

  tfds build imagenet2012 --data_dir=/data/tensorflow_datasets --manual_dir=/data/ilsvrc

Training never downloads. The view reads every ImageNet record and keeps one in ten; on slow
storage export the 100 classes once to an image folder (input_pipeline.export_image_folder,
about 14 GB) and add --config.data.name=folder --config.data.data_dir=<that folder>.

Hardware: one accelerator host. The batch (256) is global, so the same command runs on 1, 8 or
more devices (and hosts: add --distributed, or use launch/tpu.sh). Expected runtime (an estimate from FLOPs and
typical ResNet-50 throughput, not a measurement): LooC with n = 2 costs about 2x a supervised
ResNet-50 step per image (one query pass with gradients, three key passes), so 500 epochs
(63M images) take roughly 10-12 hours on one H100 in bfloat16, 2-3 hours on 8; MoCo v2
(configs/moco_in100_r50.py) about two thirds of that. The host must decode and resize about
1,500-2,000 images/s per H100: about 4-6 CPU cores per GPU at the rates measured by
`python -m leave_one_out.bench_input` (docs/data.md).

Recipe: ResNet-50, 224 px views, batch 256, 500 epochs, SGD momentum 0.9, lr 0.03 per 256 with a
cosine schedule (MoCo v2; a public reproduction steps x0.1 at epochs 300 and 400:
--config.train.schedule=step), weight decay 1e-4, temperature 0.2, key encoder EMA 0.999, a
queue of 16,384 negatives per embedding space (--config.loss.queue_size=0 for in-batch negatives
only). Spaces: colour and rotation (LooC's default); ":texture" adds the texture space.
"""

from leave_one_out import config as config_lib


def get_config(arg=None):
  """``arg``: "" (spaces colour, rotation) or "texture" (colour, rotation, texture)."""
  if arg not in (None, "", "texture"):
    raise ValueError(f"configs/looc_in100_r50.py takes '' or 'texture', got {arg!r}")
  c = config_lib.default_config()
  c.seed = 0

  c.data.name = "imagenet100"  # tfds imagenet2012, the CMC 100 classes, relabelled 0..99
  c.data.data_dir = ""  # "" = $TFDS_DATA_DIR or ~/tensorflow_datasets (gs:// works)
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.image_size = 256  # S0: whole image resized to 256 x 256 on the host (plus its aspect)
  c.data.shuffle_buffer = 10_000  # about 1.1 GB of encoded JPEGs per host

  c.augment.image_size = 224
  c.augment.spaces = ("color", "rotation")
  c.augment.rotation.enabled = True
  if arg == "texture":
    c.augment.texture.enabled = True
    c.augment.spaces = ("color", "rotation", "texture")

  c.model.architecture = "resnet50"
  c.model.width = 64
  c.model.embedding_dim = 128
  c.model.head_hidden = 0  # = 2048, MoCo v2's MLP head
  c.model.looc_plus_plus = False  # --config.model.looc_plus_plus=True for LooC++
  c.model.dtype = "bfloat16"  # float32 for a bit-faithful fp32 run (about 2x slower)

  c.loss.temperature = 0.2
  c.loss.queue_size = 16_384  # per space, as in the paper; 0 = in-batch negatives only

  c.train.batch_size = 256
  c.train.num_epochs = 500
  c.train.num_steps = 0
  c.train.optimizer = "sgd"
  c.train.base_lr = 0.03
  c.train.momentum = 0.9
  c.train.weight_decay = 1e-4
  c.train.schedule = "cosine"
  c.train.warmup_epochs = 0.0
  c.train.step_epochs = (300, 400)  # used with --config.train.schedule=step
  c.train.ema_momentum = 0.999

  c.log_every_steps = 100
  c.checkpoint_every_steps = 1000  # about 2 epochs
  c.keep_checkpoints = 3  # the newest three ...
  c.keep_every_steps = 50_000  # ... plus steps 50k, 100k, ... (about every 100 epochs) and the
  #                              final step (247,000), kept for good
  return c
