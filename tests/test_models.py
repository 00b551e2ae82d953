"""ResNet backbones and the multi-head LooC model."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from leave_one_out import models


def _init(model, size=32, batch=2):
  x = jnp.linspace(0, 1, batch * size * size * 3).reshape(batch, size, size, 3)
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  return x, variables


def _count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("arch,params_m", [("resnet18", 11.69), ("resnet50", 25.56)])
def test_backbones_match_torchvision_parameter_counts(arch, params_m):
  """torchvision's resnet18/50 have 11.69M / 25.56M parameters (1000-way fc included)."""
  model = models.LooCModel(architecture=arch, num_spaces=1)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)), train=False))
  backbone = _count(shapes["params"]["backbone"])
  fc = model.feature_dim * 1000 + 1000
  assert abs((backbone + fc) / 1e6 - params_m) < 0.01
  assert model.feature_dim == (512 if arch == "resnet18" else 2048)


def test_outputs_shapes_and_normalisation():
  model = models.LooCModel(architecture="resnet10", num_spaces=3, width=8, embedding_dim=16,
                           small_stem=True)
  x, variables = _init(model)
  out = model.apply(variables, x, train=False)
  assert out["feature"].shape == (2, 64)
  assert out["space_features"].shape == (2, 3, 64)
  assert out["embeddings"].shape == (2, 3, 16)
  np.testing.assert_allclose(jnp.linalg.norm(out["embeddings"], axis=-1), 1.0, rtol=1e-5)
  # Plain LooC: one shared feature V, one head per space.
  np.testing.assert_array_equal(out["space_features"][:, 1], out["feature"])
  assert sorted(k for k in variables["params"] if k.startswith("head")) == [
      "head0", "head1", "head2"]
  # Heads are different functions of V.
  assert not np.allclose(out["embeddings"][:, 0], out["embeddings"][:, 1])


def test_looc_plus_plus_owns_res5_per_space():
  model = models.LooCModel(architecture="resnet10", num_spaces=3, width=8, embedding_dim=16,
                           small_stem=True, looc_plus_plus=True)
  x, variables = _init(model)
  params = variables["params"]
  assert "res5" not in params["backbone"] and "res4" in params["backbone"]
  assert all(f"res5_space{h}" in params for h in range(3))
  out = model.apply(variables, x, train=False)
  assert out["feature"].shape == (2, 3 * 64)
  np.testing.assert_array_equal(out["feature"], out["space_features"].reshape(2, -1))
  assert not np.allclose(out["space_features"][:, 0], out["space_features"][:, 1])


def test_train_mode_updates_batch_stats_and_bf16_runs():
  model = models.LooCModel(architecture="resnet10", num_spaces=2, width=8, small_stem=True,
                           dtype=jnp.bfloat16)
  x, variables = _init(model, batch=4)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert out["embeddings"].dtype == jnp.float32
  before = jax.tree.leaves(variables["batch_stats"])
  after = jax.tree.leaves(updates["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_create_model_stems_and_errors():
  cfg = ml_collections.ConfigDict(dict(
      architecture="resnet18", width=64, embedding_dim=128, head_hidden=0, looc_plus_plus=False,
      stem="auto", dtype="float32", bn_momentum=0.9))
  assert models.create_model(cfg, num_spaces=2, image_size=32).small_stem
  assert not models.create_model(cfg, num_spaces=2, image_size=224).small_stem
  cfg.architecture = "resnet51"
  with pytest.raises(ValueError, match="architecture"):
    models.create_model(cfg, num_spaces=2, image_size=32)
