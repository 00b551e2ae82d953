"""What the tests share: tiny configs (every run takes seconds on CPU), a checkpoint written
without training, the restored state of a run."""

import jax

from leave_one_out import config as config_lib
from leave_one_out import sharding
from leave_one_out import train
from leave_one_out.run import checkpoints

# CLI flags that shrink configs/demo.py to the size of tiny_config().
CLI_TINY = [
  "--noevaluate",
  "--config.train.batch_size=16",
  "--config.data.num_train=64",
  "--config.data.image_size=20",
  "--config.augment.image_size=16",
  "--config.augment.texture.freq=(2.0,6.0)",
  "--config.model.width=4",
  "--config.model.head_hidden=16",
  "--config.model.embedding_dim=8",
]


def tiny_config(spaces=("color", "rotation"), steps=4, batch=16):
  c = config_lib.default_config()
  c.data.name = "synthetic"
  c.data.image_size = 20
  c.data.num_train = 64
  c.augment.image_size = 16
  c.augment.spaces = tuple(spaces)
  c.augment.texture.freq = (2.0, 6.0)  # Nyquist at 16 px is 8 cycles per image
  c.model.architecture = "resnet10"
  c.model.width = 4
  c.model.embedding_dim = 8
  c.model.head_hidden = 16
  c.model.dtype = "float32"
  c.model.bn_groups = 0  # with a queue: shuffle-BN in one group per device
  c.loss.queue_size = 0
  c.train.batch_size = batch
  c.train.num_steps = steps
  c.train.base_lr = 0.1
  c.train.ema_momentum = 0.9
  c.train.weight_decay_mask = "no_bn_bias"
  c.log_every_steps = 2
  c.checkpoint_every_steps = 2
  c.keep_every_steps = 0
  c.async_checkpoints = False
  return c


def final_state(workdir):
  """(step, host state) of the newest checkpoint in ``workdir``, restored like a user would."""
  ckpt = checkpoints.Checkpointer(str(workdir), async_save=False)
  step = ckpt.latest_step()
  cfg = ckpt.restore_config(step)
  abstract = train.programs(cfg, sharding.make_mesh(), steps_per_epoch=1).abstract_state()
  state, _ = ckpt.restore(step, abstract)
  ckpt.close()
  return step, jax.device_get(state)


CHECKPOINT_STEP = 3


def write_checkpoint(workdir, cfg, step=CHECKPOINT_STEP, edit=lambda state: state):
  """A workdir as pretraining leaves it (train state + meta), without running a step.

  The EMA encoder is shifted by 0.01 so tests can tell the two encoders apart; ``edit`` changes
  the state before it is saved. Returns the saved state on the host.
  """
  state = train.programs(cfg, sharding.make_mesh(), steps_per_epoch=1).new_state(cfg.seed)
  state = edit(state.replace(ema_params=jax.tree.map(lambda p: p + 0.01, state.ema_params)))
  ckpt = checkpoints.Checkpointer(workdir, async_save=False)
  ckpt.save(step, state, checkpoints.meta_record(cfg, step), force=True)
  ckpt.close()
  return jax.device_get(state)


def set_field(c, field, value):
  """Sets the dotted ``field`` ("dataset.num_train") of the ConfigDict ``c``."""
  *path, last = field.split(".")
  section = c
  for part in path:
    section = section[part]
  section[last] = value
