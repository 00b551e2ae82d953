"""load_pretrained, extract_features and export."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import flax
import jax
import numpy as np
import pytest

import leave_one_out
from leave_one_out import extract
from leave_one_out import models
from leave_one_out import pretrained
from leave_one_out.data.synthetic import scenes
from tests import helpers
from tests.helpers import tiny_config
from tests.helpers import write_checkpoint

# Its module-scoped fixtures are built once: every test of the file runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_pretrained")

STEP = helpers.CHECKPOINT_STEP
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("pretrained") / "run")
  write_checkpoint(path, tiny_config())
  return path


@pytest.fixture(scope="module")
def images():
  return scenes.load("test", num_examples=13, image_size=20)["image"]  # 13: padded batches


def _all_kinds(model):
  return extract.feature_kinds(model, all_spaces=True)


def test_fresh_process_gives_identical_features(workdir, images, tmp_path):
  model, variables, config = pretrained.load_pretrained(workdir)
  kinds = _all_kinds(model)
  here = extract.extract_feature_dict(
    model, variables, images, kinds, image_size=config.augment.image_size
  )
  np.save(tmp_path / "images.npy", images)
  script = textwrap.dedent(f"""
      import sys, numpy as np
      from leave_one_out import extract, pretrained
      model, variables, config = pretrained.load_pretrained({workdir!r})
      out = extract.extract_feature_dict(model, variables, np.load(sys.argv[1]), {kinds!r},
                                         image_size=config.augment.image_size)
      np.savez(sys.argv[2], *[out[k] for k in {kinds!r}])
      """)
  subprocess.run(
    [sys.executable, "-c", script, str(tmp_path / "images.npy"), str(tmp_path / "out.npz")],
    cwd=REPO,
    env=dict(os.environ),
    check=True,
    timeout=300,
    capture_output=True,
  )
  there = np.load(tmp_path / "out.npz")
  for i, kind in enumerate(kinds):
    np.testing.assert_array_equal(here[kind], there[f"arr_{i}"], err_msg=kind)


def test_features_match_the_model_and_the_saved_state(workdir, images):
  cfg = tiny_config()
  model, variables, config = pretrained.load_pretrained(workdir)
  assert tuple(config.augment.spaces) == ("color", "rotation")  # JSON lists back to tuples
  assert model == models.build_model(cfg)
  x = extract.preprocess(images, cfg.augment.image_size)
  assert x.shape == (13, 16, 16, 3) and x.dtype == np.float32
  direct = jax.jit(lambda v, x: model.apply(v, x, train=False))(jax.device_get(variables), x)
  feats = extract.extract_feature_dict(
    model, variables, images, _all_kinds(model), image_size=16, batch_size=8
  )  # 2 batches, padded
  np.testing.assert_allclose(feats["backbone"], direct["feature"], rtol=1e-5, atol=1e-6)
  for h in range(3):
    np.testing.assert_allclose(
      feats[f"embedding:{h}"], direct["embeddings"][:, h], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(feats[f"space:{h}"], feats["backbone"])  # LooC: all V
    np.testing.assert_allclose(np.linalg.norm(feats[f"embedding:{h}"], axis=1), 1.0, rtol=1e-5)
  assert feats["backbone"].shape == (13, model.feature_dim)
  assert extract.feature_kinds(model) == ["backbone", "embedding:0", "embedding:1", "embedding:2"]


def test_kinds_are_checked(workdir, images):
  model, variables, _ = pretrained.load_pretrained(workdir)
  with pytest.raises(ValueError, match="needs a LooC\\+\\+ model"):
    extract.extract_features(model, variables, images, kind="looc++")
  for bad in ("space:3", "embedding", "head:0", "Backbone"):
    with pytest.raises(ValueError, match="unknown feature kind"):
      extract.extract_features(model, variables, images, kind=bad)
  with pytest.raises(ValueError, match="images must be"):
    extract.extract_features(model, variables, images[0])


def test_looc_plus_plus_kinds(images):
  cfg = tiny_config()
  cfg.model.looc_plus_plus = True
  model = models.build_model(cfg)
  init = lambda x: model.init(jax.random.key(0, impl="rbg"), x, train=False)  # fast to compile
  variables = jax.jit(init)(np.zeros((1, 16, 16, 3), np.float32))
  kinds = extract.feature_kinds(model)
  assert kinds[:2] == ["backbone", "looc++"] and "space:2" in kinds
  f = extract.extract_feature_dict(model, variables, images, kinds, image_size=16)
  np.testing.assert_allclose(
    f["looc++"], np.concatenate([f[f"space:{h}"] for h in range(3)], axis=1), rtol=1e-6
  )
  assert f["backbone"].shape == (13, model.feature_dim // 2)  # the shared res4, pooled
  assert not np.allclose(f["space:0"], f["space:1"])  # each space owns its res5


def test_load_paths_and_encoders(workdir, images):
  _, v_workdir, _ = pretrained.load_pretrained(workdir)
  _, v_dir, _ = pretrained.load_pretrained(os.path.join(workdir, "checkpoints", str(STEP)))
  _, v_step, _ = pretrained.load_pretrained(workdir, step=STEP)
  _, v_ema, _ = pretrained.load_pretrained(workdir, encoder="ema")
  for a, b, c in zip(*map(jax.tree.leaves, (v_workdir, v_dir, v_step))):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
  a, e = (jax.tree.leaves(v["params"])[0] for v in (v_workdir, v_ema))
  np.testing.assert_allclose(e, a + 0.01, rtol=1e-6)


@pytest.mark.skipif(
  not hasattr(leave_one_out, "load_pretrained"),
  reason="leave_one_out/__init__.py does not export load_pretrained yet",
)
def test_three_line_example(workdir, images):
  model, variables, config = leave_one_out.load_pretrained(workdir)
  features = leave_one_out.extract_features(
    model, variables, images, kind="backbone", image_size=config.augment.image_size
  )
  assert features.shape == (13, model.feature_dim)


def test_missing_checkpoints(tmp_path, workdir):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    pretrained.load_pretrained(str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match="no LooC checkpoint"):
    pretrained.load_pretrained(str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")  # looking never creates anything
  with pytest.raises(FileNotFoundError, match="available steps: \\[3\\]"):
    pretrained.load_pretrained(workdir, step=99)
  with pytest.raises(ValueError, match="encoder"):
    pretrained.load_pretrained(workdir, encoder="key")


def _copy(workdir, tmp_path, name):
  dst = str(tmp_path / name)
  shutil.copytree(workdir, dst)
  return dst, os.path.join(dst, "checkpoints", str(STEP))


def test_corrupt_checkpoints(workdir, tmp_path):
  bad_meta, step_dir = _copy(workdir, tmp_path, "meta")
  with open(os.path.join(step_dir, "meta", "metadata"), "w") as f:
    f.write("{not json")
  with pytest.raises(pretrained.CheckpointError, match="corrupt.*meta"):
    pretrained.load_pretrained(bad_meta)

  bad_state, step_dir = _copy(workdir, tmp_path, "state")
  os.remove(os.path.join(step_dir, "state", "_METADATA"))
  with pytest.raises(pretrained.CheckpointError, match="corrupt"):
    pretrained.load_pretrained(bad_state)


def test_non_finite_values_are_refused_naming_their_leaves(tmp_path):
  def poison(state):  # one NaN in the online encoder's head 1, one inf in a BatchNorm mean
    params = flax.traverse_util.flatten_dict(state.params, sep="/")
    params["head1/fc1/kernel"] = params["head1/fc1/kernel"].at[0, 0].set(np.nan)
    stats = flax.traverse_util.flatten_dict(state.batch_stats, sep="/")
    stats["backbone/stem_bn/mean"] = stats["backbone/stem_bn/mean"].at[1].set(np.inf)
    return state.replace(
      params=flax.traverse_util.unflatten_dict(params, sep="/"),
      batch_stats=flax.traverse_util.unflatten_dict(stats, sep="/"),
    )

  path = str(tmp_path / "run")
  write_checkpoint(path, tiny_config(), edit=poison)
  with pytest.raises(
    pretrained.CheckpointError,
    match=r"non-finite values in "
    r"\['batch_stats/backbone/stem_bn/mean', 'params/head1/fc1/kernel'\]",
  ):
    pretrained.load_pretrained(path)
  pretrained.load_pretrained(path, encoder="ema")  # the momentum encoder's values are finite


def test_mismatched_checkpoint(workdir, tmp_path):
  wrong, step_dir = _copy(workdir, tmp_path, "wrong")
  path = os.path.join(step_dir, "meta", "metadata")
  with open(path) as f:
    meta = json.load(f)
  meta["config"]["model"]["width"] = 8
  with open(path, "w") as f:
    json.dump(meta, f)
  with pytest.raises(
    pretrained.CheckpointError,
    match="does not match the model.*width=8.*stored \\(4,\\), model \\(8,\\)",
  ):
    pretrained.load_pretrained(wrong)


def test_export_needs_only_flax(workdir, images, tmp_path):
  out = pretrained.export(workdir, str(tmp_path / "looc.msgpack"))
  with open(out, "rb") as f:
    payload = flax.serialization.msgpack_restore(f.read())
  assert payload["format"] == pretrained.EXPORT_FORMAT and payload["step"] == STEP
  assert payload["image_size"] == 16 and list(payload["spaces"]) == ["color", "rotation"]
  assert sorted(payload["params"]) == ["backbone", "head0", "head1", "head2"]
  model, variables, config = pretrained.load_pretrained(workdir)
  model2, variables2, config2 = pretrained.load_pretrained(out)
  assert model2 == model and config2.to_json() == config.to_json()
  kinds = _all_kinds(model)
  a = extract.extract_feature_dict(model, variables, images, kinds, image_size=16)
  b = extract.extract_feature_dict(model2, variables2, images, kinds, image_size=16)
  for kind in kinds:
    np.testing.assert_array_equal(a[kind], b[kind])
  # A LooC model rebuilt from the file's fields alone (what a flax-only user would do).
  fields = dict(payload["model"], dtype=jax.numpy.float32)
  assert models.LooCModel(**fields) == model

  bare = pretrained.export(workdir, str(tmp_path / "bare.msgpack"), include_heads=False)
  with open(bare, "rb") as f:
    assert sorted(flax.serialization.msgpack_restore(f.read())["params"]) == ["backbone"]
  with pytest.raises(pretrained.CheckpointError, match="without heads"):
    pretrained.load_pretrained(bare)
  (tmp_path / "junk.msgpack").write_bytes(b"\x00junk")
  with pytest.raises(pretrained.CheckpointError, match="not a file written by"):
    pretrained.load_pretrained(str(tmp_path / "junk.msgpack"))


def test_loading_again_reuses_the_traced_model_shapes(workdir):
  """Loading several checkpoints of one config (the claims' seeds) traces its model once."""
  model, _, config = pretrained.load_pretrained(workdir)
  before = pretrained._abstract_variables.cache_info()
  _, variables, _ = pretrained.load_pretrained(workdir)
  after = pretrained._abstract_variables.cache_info()
  assert (after.hits, after.misses) == (before.hits + 1, before.misses)
  shapes = pretrained.abstract_variables(model, config.augment.image_size)
  assert all(jax.tree.leaves(jax.tree.map(lambda s, v: s.shape == v.shape, shapes, variables)))
  shapes["params"].clear()  # a caller's edit does not reach the next load
  assert pretrained.abstract_variables(model, config.augment.image_size)["params"]
