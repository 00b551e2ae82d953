"""Tiny configs shared by the tests: every run takes seconds on CPU."""

from leave_one_out import config as config_lib


def tiny_config(spaces=("color", "rotation"), steps=4, batch=16):
  c = config_lib.default_config()
  c.data.image_size = 20
  c.data.num_train = 64
  c.augment.image_size = 16
  c.augment.spaces = tuple(spaces)
  c.augment.texture.freq = (2.0, 6.0)  # Nyquist at 16 px is 8 cycles per image
  c.model.architecture = "resnet10"
  c.model.width = 4
  c.model.embedding_dim = 8
  c.model.head_hidden = 16
  c.train.batch_size = batch
  c.train.num_steps = steps
  c.train.base_lr = 0.1
  c.train.ema_momentum = 0.9
  c.log_every_steps = 2
  c.checkpoint_every_steps = 2
  c.async_checkpoints = False
  return c
