"""ResNet backbones and the multi-head LooC model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leave_one_out import models
from leave_one_out import resnet


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
  shapes = jax.eval_shape(
    lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)), train=False)
  )
  backbone = _count(shapes["params"]["backbone"])
  fc = model.feature_dim * 1000 + 1000
  assert abs((backbone + fc) / 1e6 - params_m) < 0.01
  assert model.feature_dim == (512 if arch == "resnet18" else 2048)


def test_outputs_shapes_and_normalisation():
  model = models.LooCModel(
    architecture="resnet10", num_spaces=3, width=8, embedding_dim=16, small_stem=True
  )
  x, variables = _init(model)
  out = model.apply(variables, x, train=False)
  assert out["feature"].shape == (2, 64)
  assert out["space_features"].shape == (2, 3, 64)
  assert out["embeddings"].shape == (2, 3, 16)
  np.testing.assert_allclose(jnp.linalg.norm(out["embeddings"], axis=-1), 1.0, rtol=1e-5)
  # Plain LooC: one shared feature V, one head per space.
  np.testing.assert_array_equal(out["space_features"][:, 1], out["feature"])
  assert sorted(k for k in variables["params"] if k.startswith("head")) == [
    "head0",
    "head1",
    "head2",
  ]
  # Heads are different functions of V.
  assert not np.allclose(out["embeddings"][:, 0], out["embeddings"][:, 1])


def test_looc_plus_plus_owns_res5_per_space():
  model = models.LooCModel(
    architecture="resnet10",
    num_spaces=3,
    width=8,
    embedding_dim=16,
    small_stem=True,
    looc_plus_plus=True,
  )
  x, variables = _init(model)
  params = variables["params"]
  assert "res5" not in params["backbone"] and "res4" in params["backbone"]
  assert all(f"res5_space{h}" in params for h in range(3))
  out = model.apply(variables, x, train=False)
  assert out["feature"].shape == (2, 3 * 64)
  np.testing.assert_array_equal(out["feature"], out["space_features"].reshape(2, -1))
  assert not np.allclose(out["space_features"][:, 0], out["space_features"][:, 1])


def test_train_mode_updates_batch_stats_and_bf16_runs():
  model = models.LooCModel(
    architecture="resnet10", num_spaces=2, width=8, small_stem=True, dtype=jnp.bfloat16
  )
  x, variables = _init(model, batch=4)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert out["embeddings"].dtype == jnp.float32
  before = jax.tree.leaves(variables["batch_stats"])
  after = jax.tree.leaves(updates["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_create_model_stems_and_errors():
  cfg = models.default_config()
  cfg.update(architecture="resnet18", width=64, dtype="float32")
  assert models.create_model(cfg, num_spaces=2, image_size=32).small_stem
  assert not models.create_model(cfg, num_spaces=2, image_size=224).small_stem
  cfg.architecture = "resnet51"
  with pytest.raises(ValueError, match="architecture"):
    models.create_model(cfg, num_spaces=2, image_size=32)


# ----------------------------------------------------------------- torchvision's padding


def _convs_and_pools(closed_jaxpr):
  """Every convolution and max-pool in a jaxpr, sub-jaxprs included."""

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in ("conv_general_dilated", "reduce_window_max"):
        yield eqn
      for param in eqn.params.values():
        inner = getattr(param, "jaxpr", param)
        if hasattr(inner, "eqns"):
          yield from walk(inner)

  return list(walk(closed_jaxpr.jaxpr))


@pytest.mark.parametrize(
  "arch,stem,size", [("resnet50", False, 64), ("resnet18", False, 224), ("resnet10", True, 32)]
)
def test_every_convolution_and_pool_pads_like_torchvision(arch, stem, size):
  """torchvision pads a k x k convolution k // 2 on each side whatever its stride, and its
  3x3 stride-2 max-pool 1: Flax's "SAME" would pad the stride-2 3x3s (0, 1) at even sizes."""
  model = models.LooCModel(
    architecture=arch, num_spaces=2, width=8, small_stem=stem, looc_plus_plus=True
  )
  jaxpr = jax.make_jaxpr(lambda x: model.init(jax.random.PRNGKey(0), x, train=False))(
    jnp.zeros((1, size, size, 3))
  )
  ops = _convs_and_pools(jaxpr)
  convs = [e for e in ops if e.primitive.name == "conv_general_dilated"]
  strided = 0
  for eqn in convs:
    spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, spatial...) dims of the kernel
    kh, kw = (eqn.invars[1].aval.shape[d] for d in spec[2:])
    assert eqn.params["padding"] == ((kh // 2, kh // 2), (kw // 2, kw // 2)), eqn.params
    strided += eqn.params["window_strides"] == (2, 2) and kh == 3
  assert strided == 2 + 2  # res3, res4, and res5 of each of the two spaces (LooC++)
  pools = [e for e in ops if e.primitive.name == "reduce_window_max"]
  assert len(pools) == (0 if stem else 1)
  for eqn in pools:
    assert eqn.params["padding"] == ((0, 0), (1, 1), (1, 1), (0, 0))
    assert eqn.params["window_dimensions"] == (1, 3, 3, 1)


def _torch_conv(x, kernel, stride):
  """torchvision's Conv2d(padding=k // 2, bias=False) written with plain lax (HWIO kernel)."""
  k = kernel.shape[0]
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    (stride, stride),
    ((k // 2, k // 2), (k // 2, k // 2)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=jax.lax.Precision.HIGHEST,
  )


def _torch_bn(x, p):
  """BatchNorm2d in training mode: batch statistics over N, H, W (biased variance)."""
  mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
  return (x - mean) / jnp.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def _random_params(variables, seed=1):
  leaves, tree = jax.tree.flatten(variables["params"])
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  leaves = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return {**variables, "params": jax.tree.unflatten(tree, leaves)}


def test_strided_bottleneck_matches_a_plain_lax_reference():
  """One strided ResNet-50 block, its weights copied into a reference with torchvision's
  padding: conv1x1-BN-ReLU, conv3x3/2-BN-ReLU, conv1x1-BN, plus the 1x1/2 shortcut."""
  stage = resnet.Stage("bottleneck", features=4, num_blocks=1, strides=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 8))
  variables = _random_params(stage.init(jax.random.PRNGKey(0), x, train=False))
  got, _ = stage.apply(variables, x, train=True, mutable=["batch_stats"])
  p = variables["params"]["block0"]
  y = jax.nn.relu(_torch_bn(_torch_conv(x, p["Conv_0"]["kernel"], 1), p["BatchNorm_0"]))
  y = jax.nn.relu(_torch_bn(_torch_conv(y, p["Conv_1"]["kernel"], 2), p["BatchNorm_1"]))
  y = _torch_bn(_torch_conv(y, p["Conv_2"]["kernel"], 1), p["BatchNorm_2"])
  shortcut = _torch_bn(_torch_conv(x, p["downsample_conv"]["kernel"], 2), p["downsample_bn"])
  want = jax.nn.relu(y + shortcut)
  assert got.shape == (2, 4, 4, 16)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_imagenet_stem_matches_a_plain_lax_reference():
  """conv 7x7/2 padding 3, BN, ReLU, max-pool 3x3/2 padding 1 (padded with -inf)."""
  trunk = resnet.Trunk("basic", stage_sizes=(), width=8)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 3))
  variables = _random_params(trunk.init(jax.random.PRNGKey(0), x, train=False))
  got, _ = trunk.apply(variables, x, train=True, mutable=["batch_stats"])
  p = variables["params"]
  y = jax.nn.relu(_torch_bn(_torch_conv(x, p["stem_conv"]["kernel"], 2), p["stem_bn"]))
  want = jax.lax.reduce_window(
    y, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
  )
  assert got.shape == (2, 4, 4, 8)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
@pytest.mark.parametrize("k", [1, 2])
def test_strided_block_is_rotation_equivariant(block, k):
  """With symmetric padding a strided block commutes with rotations, as torchvision's does.

  An 8 x 8 input whose last row and column are zero is a 7 x 7 image that the stride-2 block
  samples at its pixels 0, 2, 4, 6 in both branches. Rotating that image by k * 90 degrees and
  every kernel likewise rotates the 4 x 4 output. Flax's (0, 1) padding samples the 3x3 branch
  at pixels 1, 3, 5, 7 instead, misaligned with the 1x1 shortcut, and breaks this.
  """
  stage = resnet.Stage(block, features=4, num_blocks=1, strides=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 4)).at[:, 7].set(0).at[:, :, 7].set(0)
  variables = _random_params(stage.init(jax.random.PRNGKey(0), x, train=False))
  # Evaluation-mode BatchNorm with zero mean and bias maps 0 to 0 (the zero border stays zero);
  # random scales and variances keep it a non-trivial function.
  params = jax.tree_util.tree_map_with_path(
    lambda path, p: jnp.zeros_like(p) if "bias" in jax.tree_util.keystr(path) else p,
    variables["params"],
  )
  stats = jax.tree_util.tree_map_with_path(
    lambda path, s: (
      jnp.zeros_like(s)
      if "mean" in jax.tree_util.keystr(path)
      else 0.5 + jax.random.uniform(jax.random.PRNGKey(s.size), s.shape)
    ),
    variables["batch_stats"],
  )
  variables = {"params": params, "batch_stats": stats}
  rotated_vars = {
    "params": jax.tree.map(lambda p: jnp.rot90(p, k, axes=(0, 1)) if p.ndim == 4 else p, params),
    "batch_stats": stats,
  }
  rot = lambda a: jnp.rot90(a, k, axes=(1, 2))
  x_rot = x.at[:, :7, :7].set(rot(x[:, :7, :7]))
  out = stage.apply(variables, x, train=False)
  out_rot = stage.apply(rotated_vars, x_rot, train=False)
  assert float(jnp.abs(out).max()) > 0.1
  np.testing.assert_allclose(out_rot, rot(out), rtol=1e-4, atol=1e-5)


def test_zero_init_residual_sets_only_the_last_bn_scale_of_each_branch():
  shapes = {}
  for zero in (False, True):
    model = models.LooCModel(
      architecture="resnet50", num_spaces=1, width=8, zero_init_residual=zero
    )
    x, variables = _init(model, size=32, batch=1)
    shapes[zero] = jax.tree.map(jnp.shape, variables)
    block = variables["params"]["backbone"]["res3"]["block0"]
    last = block["BatchNorm_2"]["scale"]
    np.testing.assert_array_equal(last, 0.0 if zero else 1.0)
    np.testing.assert_array_equal(block["BatchNorm_1"]["scale"], 1.0)
    np.testing.assert_array_equal(block["downsample_bn"]["scale"], 1.0)
  assert shapes[False] == shapes[True]  # the same parameter tree: checkpoints stay loadable


# ----------------------------------------------------------------- BatchNorm and shuffle-BN


def test_batchnorm_matches_flax_batchnorm():
  """One group: the same variables and numbers as flax.linen.BatchNorm (train and eval)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 5, 5, 3)) * 2 + 1
  ours, theirs = resnet.BatchNorm(momentum=0.8), nn_batchnorm(momentum=0.8)
  v_ours = ours.init(jax.random.PRNGKey(0), x)
  v_theirs = theirs.init(jax.random.PRNGKey(0), x)
  assert jax.tree.map(jnp.shape, v_ours) == jax.tree.map(jnp.shape, v_theirs)
  v = jax.tree.map(lambda a: a + 0.5, v_theirs)
  y1, s1 = ours.apply(v, x, mutable=["batch_stats"])
  y2, s2 = theirs.apply(v, x, mutable=["batch_stats"])
  np.testing.assert_allclose(y1, y2, rtol=1e-6, atol=1e-6)
  for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  eval_ours = resnet.BatchNorm(use_running_average=True).apply(v, x)
  eval_theirs = nn_batchnorm(use_running_average=True).apply(v, x)
  np.testing.assert_allclose(eval_ours, eval_theirs, rtol=1e-6, atol=1e-6)


def nn_batchnorm(**kw):
  import flax.linen as nn  # pylint: disable=import-outside-toplevel

  return nn.BatchNorm(use_running_average=kw.pop("use_running_average", False), epsilon=1e-5, **kw)


def test_grouped_batchnorm_normalises_each_group_with_its_own_statistics():
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 3, 3, 2)) * jnp.arange(1, 9)[:, None, None, None]
  bn = resnet.BatchNorm(groups=4, momentum=0.5)
  v = bn.init(jax.random.PRNGKey(0), x)
  y, stats = bn.apply(v, x, mutable=["batch_stats"])
  one = lambda part: resnet.BatchNorm().apply(v, part, mutable=["batch_stats"])[0]
  means, variances = [], []
  for g in range(4):  # groups in order: examples 2g, 2g + 1
    part = x[2 * g : 2 * g + 2]
    np.testing.assert_allclose(y[2 * g : 2 * g + 2], one(part), rtol=1e-5, atol=1e-5)
    means.append(part.mean(axis=(0, 1, 2)))
    variances.append(part.var(axis=(0, 1, 2)))
  # Running averages move towards the mean of the groups' statistics (momentum 0.5).
  np.testing.assert_allclose(
    stats["batch_stats"]["mean"], 0.5 * np.mean(means, axis=0), rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(
    stats["batch_stats"]["var"], 0.5 + 0.5 * np.mean(variances, axis=0), rtol=1e-5
  )
  # Different from global statistics.
  assert not np.allclose(y, one(x), atol=1e-2)


def _shuffle_setup(batch=8, groups=4):
  model = models.LooCModel(
    architecture="resnet10", num_spaces=2, width=4, embedding_dim=8, head_hidden=16, small_stem=True
  )
  x, variables = _init(model, size=16, batch=batch)
  x = jax.random.uniform(jax.random.PRNGKey(3), x.shape)
  ids = resnet.shuffled_group_ids(jax.random.PRNGKey(7), batch, groups)
  return model, _random_params(variables), x, ids


def test_shuffled_groups_equal_permute_normalise_unpermute():
  """Group ids from a permutation == permuting the batch, normalising G contiguous groups in
  order and undoing the permutation: outputs come back in the original order, exactly."""
  model, variables, x, ids = _shuffle_setup()
  assert np.bincount(np.asarray(ids), minlength=4).tolist() == [2, 2, 2, 2]
  got, _ = model.apply(
    variables, x, train=True, bn_groups=4, bn_group_ids=ids, mutable=["batch_stats"]
  )
  # The permutation behind the ids: position of each example in the shuffled batch.
  perm = np.asarray(jax.random.permutation(jax.random.PRNGKey(7), 8))
  shuffled = np.empty_like(np.asarray(x))
  shuffled[perm] = np.asarray(x)  # example b at position perm[b]
  out, _ = model.apply(
    variables, jnp.asarray(shuffled), train=True, bn_groups=4, mutable=["batch_stats"]
  )
  unshuffled = np.asarray(out["embeddings"])[perm]
  np.testing.assert_allclose(got["embeddings"], unshuffled, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(ids), perm // 2)


def test_shuffled_groups_statistics_are_per_group():
  """Changing the images of one group changes that group's outputs and no other's."""
  model, variables, x, ids = _shuffle_setup()
  apply = lambda images: model.apply(
    variables, images, train=True, bn_groups=4, bn_group_ids=ids, mutable=["batch_stats"]
  )[0]["embeddings"]
  base = apply(x)
  in_group = np.asarray(ids) == 1
  changed = apply(jnp.where(in_group[:, None, None, None], 1.0 - x, x))
  np.testing.assert_array_equal(changed[~in_group], base[~in_group])
  assert not np.allclose(changed[in_group], base[in_group], atol=1e-3)
  # With global statistics the same change reaches every example.
  glob = lambda images: model.apply(variables, images, train=True, mutable=["batch_stats"])[0][
    "embeddings"
  ]
  assert not np.allclose(
    glob(jnp.where(in_group[:, None, None, None], 1.0 - x, x))[~in_group],
    glob(x)[~in_group],
    atol=1e-4,
  )


def test_group_ids_need_equal_groups():
  with pytest.raises(ValueError, match="equal BatchNorm groups"):
    resnet.group_ids(10, 4)


def test_key_bn_mode_resolves_auto():
  cfg = models.default_config()
  cfg.update(key_bn="auto", bn_groups=0)
  assert models.key_bn_mode(cfg, queue_size=256, num_devices=8) == "shuffle"
  assert models.key_bn_mode(cfg, queue_size=0, num_devices=8) == "global"
  assert models.key_bn_mode(cfg, queue_size=256, num_devices=1) == "global"  # one group
  cfg.bn_groups = 4
  assert models.key_bn_mode(cfg, queue_size=256, num_devices=1) == "shuffle"
  assert models.bn_groups(cfg, 8) == 4
