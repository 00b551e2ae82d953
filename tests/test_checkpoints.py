"""Which checkpoints are kept, and the start-up check of the keep settings."""

import dataclasses
import datetime
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import config as config_lib
from leave_one_out import pretrained
from leave_one_out import sharding
from leave_one_out import train
from leave_one_out.run import checkpoints
from tests.helpers import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class _Info:  # orbax's PolicyCheckpointInfo protocol
  step: int
  metrics: dict | None = None
  time: datetime.datetime = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def _kept(policy, steps):
  infos = [_Info(s) for s in steps]
  flags = policy.should_preserve(infos, context=None)
  return [s for s, keep in zip(steps, flags) if keep]


def test_saves_keep_the_newest_every_kth_and_the_final_step(tmp_path):
  ckpt = checkpoints.Checkpointer(
    str(tmp_path), keep=2, keep_every=4, keep_steps=(10,), async_save=False
  )
  state = {"w": jnp.arange(3.0)}
  for step in range(1, 13):
    ckpt.save(step, state, {"step": step}, force=True)
  ckpt.close()
  reopened = checkpoints.Checkpointer(str(tmp_path), async_save=False)
  assert reopened.all_steps() == [4, 8, 10, 11, 12]
  reopened.close()


def test_small_replicated_arrays_are_saved_without_device_programs(tmp_path):
  """Below REPLICA_PARALLEL_MIN_BYTES per replica an array is written whole, by one replica: no
  per-replica slice programs (each lowered and compiled on a process's first save)."""
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))
  replicated = NamedSharding(mesh, P())
  # Shapes no other test uses (a slice program would be new to this process), their rows
  # divisible by the 8 devices (orbax splits an array along a divisible axis).
  state = {
    f"v{i}": jax.device_put(jnp.arange(float(n)).reshape(n // 3, 3), replicated)
    for i, n in enumerate((120, 168, 264))
  }
  lowered = []

  def listen(event, duration, **kwargs):
    del duration, kwargs
    if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
      lowered.append(event)

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    ckpt = checkpoints.Checkpointer(str(tmp_path), async_save=False)
    ckpt.save(1, state, {"step": 1})
    ckpt.close()
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
  assert lowered == []
  reopened = checkpoints.Checkpointer(str(tmp_path), async_save=False)
  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state
  )
  restored, meta = reopened.restore(1, abstract)
  reopened.close()
  assert meta == {"step": 1}
  for name, x in state.items():
    np.testing.assert_array_equal(restored[name], x)
    assert restored[name].sharding == replicated


def _load_config(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", name))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize("name", ["looc_in100_r50.py", "moco_in100_r50.py"])
def test_imagenet100_configs_keep_periodic_checkpoints(name):
  cfg = _load_config(name)
  config_lib.validate(cfg, num_devices=8)  # includes the keep_every_steps check
  final = 494 * cfg.train.num_epochs  # ImageNet-100: 494 steps of 256 per epoch
  saved = list(range(cfg.checkpoint_every_steps, final + 1, cfg.checkpoint_every_steps))
  policy = checkpoints.preservation_policy(
    cfg.keep_checkpoints, cfg.keep_every_steps, keep_steps=(final,)
  )
  assert _kept(policy, saved) == [50_000, 100_000, 150_000, 200_000, 245_000, 246_000, 247_000]


def test_keep_every_steps_that_keeps_nothing_is_a_startup_error():
  cfg = tiny_config()
  cfg.checkpoint_every_steps = 1000
  cfg.keep_every_steps = 49_400
  with pytest.raises(
    ValueError,
    match=r"config.keep_every_steps \(49400\) must be 0 or a "
    r"multiple of config.checkpoint_every_steps \(1000\)",
  ):
    config_lib.validate(cfg)
  cfg.keep_every_steps = 50_000
  config_lib.validate(cfg)


def test_a_checkpoint_written_by_an_old_config_loads_with_the_values_that_run_used(tmp_path):
  """A run saved before today's fields existed: its config is read with the values it trained
  with (``checkpoints.OLD_CONFIG_VALUES``, not today's defaults), it loads for evaluation, and
  a run continuing from it keeps those values."""
  cfg = tiny_config()
  mesh = sharding.make_mesh()
  state = train.programs(cfg, mesh, steps_per_epoch=4).new_state(cfg.seed)
  meta = checkpoints.meta_record(cfg, 2)
  for _, field, _ in checkpoints.OLD_CONFIG_VALUES:  # as the first runs wrote it
    *parents, name = field.split(".")
    section = meta["config"]
    for parent in parents:
      section = section[parent]
    del section[name]
  meta["data_position"] = 2  # the first runs also wrote this field, never read
  ckpt = checkpoints.Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(2, state, meta, force=True)
  old = ckpt.restore_config(2)
  ckpt.close()
  assert (old.model.key_bn, old.model.bn_groups, old.train.weight_decay_mask) == (
    "global",
    0,
    "no_bn_bias",
  )
  assert (old.data.synthetic_light, old.augment.rotation.prob, old.augment.extra_keys) == (
    0.0,
    0.75,
    0,
  )
  assert old.online.to_dict() == config_lib.online_config().to_dict()
  assert (old.init_from.path, old.init_from.parts) == ("", "backbone")  # a random init
  config_lib.validate(old)
  model, variables, loaded = pretrained.load_pretrained(str(tmp_path))
  assert loaded.model.key_bn == "global" and model.num_spaces == 3
  assert jax.tree.structure(variables["params"]) == jax.tree.structure(state.params)
