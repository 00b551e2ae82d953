"""config.init_from: a new run starts from pretrained weights (leave_one_out.run.warm_start)."""

import jax
import numpy as np
import pytest

from leave_one_out import config as config_lib
from leave_one_out import pretrained
from leave_one_out import sharding
from leave_one_out import train
from leave_one_out.run import loop
from leave_one_out.run import warm_start
from tests.helpers import final_state
from tests.helpers import tiny_config
from tests.helpers import write_checkpoint

pytestmark = pytest.mark.xdist_group("test_warm_start")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("warm_start") / "source")
  write_checkpoint(path, tiny_config())
  return path


def _fresh(cfg):
  return train.programs(cfg, sharding.make_mesh(), steps_per_epoch=1).new_state(cfg.seed)


def _equal(a, b):
  return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


@pytest.mark.parametrize("parts", ["backbone", "backbone_and_heads"])
def test_a_fresh_state_takes_the_parts_it_is_told(source, parts):
  cfg = tiny_config()
  cfg.seed = 1  # another random init than the source's
  cfg.init_from.path, cfg.init_from.parts = source, parts
  fresh = jax.device_get(_fresh(cfg))
  state = jax.device_get(warm_start.apply(_fresh(cfg), cfg))
  _, loaded, _ = pretrained.load_pretrained(source)
  loaded = jax.device_get(loaded)
  assert _equal(state.params["backbone"], loaded["params"]["backbone"])
  assert _equal(state.batch_stats["backbone"], loaded["batch_stats"]["backbone"])
  heads_from = loaded["params"] if parts == "backbone_and_heads" else fresh.params
  assert _equal(state.params["head1"], heads_from["head1"])
  assert not _equal(fresh.params["backbone"], loaded["params"]["backbone"])
  assert _equal(state.ema_params, state.params) and _equal(state.ema_batch_stats, state.batch_stats)


def test_without_a_path_the_state_is_the_fresh_one(source):
  cfg = tiny_config()
  state = _fresh(cfg)
  assert warm_start.apply(state, cfg) is state


def test_weights_that_do_not_fit_are_an_error_listing_them(source):
  cfg = tiny_config()
  cfg.model.width = 8
  cfg.init_from.path = source
  with pytest.raises(
    ValueError,
    match=r"does not fit this run.s model.*60 arrays.*BatchNorm_0/mean: pretrained \(4,\), run \(8,\)",
  ):
    warm_start.apply(_fresh(cfg), cfg)
  cfg = tiny_config(spaces=("color",))
  cfg.init_from.path, cfg.init_from.parts = source, "backbone_and_heads"
  with pytest.raises(ValueError, match="parts='backbone_and_heads'.*unexpected params/head2"):
    warm_start.apply(_fresh(cfg), cfg)
  cfg.init_from.parts = "backbone"  # the backbone alone fits a run with other spaces
  warm_start.apply(_fresh(cfg), cfg)


def test_init_from_is_validated():
  cfg = tiny_config()
  cfg.init_from.parts = "everything"
  with pytest.raises(ValueError, match="config.init_from.parts must be one of"):
    config_lib.validate(cfg)


def test_a_run_starts_from_the_pretrained_backbone(source, tmp_path):
  cfg = tiny_config(steps=1)
  cfg.seed, cfg.train.base_lr = 1, 1e-8  # one step that barely moves the weights
  cfg.init_from.path = source
  loop.pretrain(cfg, str(tmp_path))
  _, state = final_state(tmp_path)
  _, loaded, _ = pretrained.load_pretrained(source)
  loaded = jax.device_get(loaded["params"]["backbone"])
  gap = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), state.params["backbone"], loaded)
  assert max(jax.tree.leaves(gap)) < 1e-5
