"""ResNet backbones in Flax linen: torchvision's layout and padding, BatchNorm over the global
batch or in groups of it.

ResNets follow torchvision's layout (v1.5: the stride sits on the 3x3 convolution; BatchNorm
after every convolution) and its padding: every k x k convolution pads k // 2 pixels on each
side (the 7x7 stem 3, every 3x3 1, the 1x1 shortcuts 0) and the stem's 3x3 max-pool pads 1.
Flax's ``padding="SAME"`` would pad a stride-2 3x3 convolution (0, 1) on even inputs, which
samples the image on a grid shifted by one pixel from the 1x1 shortcut's and breaks the block's
symmetry under rotations. The last BatchNorm of each residual branch starts with scale 1
(torchvision's and MoCo's default) or 0 with ``zero_init_residual=True`` (Goyal et al. 2017).

Changed in 2026-12: models before used "SAME" on the strided 3x3 convolutions (and on the small
stem, where it is the same padding) and always zero-initialised that BatchNorm. The parameter
tree (names and shapes) is unchanged, so older checkpoints load, but at even input sizes they
now compute a slightly different function from the one they were trained with.
Inputs of 64 px or less use a small-image stem (3x3 stride-1 convolution, no max-pool) when
``stem="auto"`` (``leave_one_out.models``).

BatchNorm (``BatchNorm``) normalises over the global batch by default. For MoCo v2's shuffle-BN
(``train.train_step``) it can instead normalise in G groups of the batch: ``bn_groups=G`` splits
the batch into G equal contiguous groups in order (MoCo's per-GPU BatchNorm), and
``bn_group_ids`` `[B]` assigns each example to a group explicitly (a shuffled assignment: the
statistics of a randomly permuted batch, with the outputs back in the original order, without
moving any data).
"""

from __future__ import annotations

import functools
from typing import Any
from typing import Callable
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ARCHITECTURES = {
  # name: (block, stage sizes)
  "resnet18": ("basic", (2, 2, 2, 2)),
  "resnet34": ("basic", (3, 4, 6, 3)),
  "resnet50": ("bottleneck", (3, 4, 6, 3)),
  "resnet101": ("bottleneck", (3, 4, 23, 3)),
  # A smaller-than-ResNet-18 net for CPU demos and tests: one block per stage.
  "resnet10": ("basic", (1, 1, 1, 1)),
}


def group_ids(batch_size: int, groups: int) -> jax.Array:
  """int32 `[B]`: contiguous groups in order, example b in group ``b // (B / groups)``."""
  if groups < 1 or batch_size % groups:
    raise ValueError(
      f"a batch of {batch_size} cannot be split into {groups} equal BatchNorm groups"
    )
  return jnp.arange(batch_size, dtype=jnp.int32) // (batch_size // groups)


def shuffled_group_ids(rng, batch_size: int, groups: int) -> jax.Array:
  """int32 `[B]`: the groups of a uniformly random permutation of the batch (MoCo's shuffle).

  Example b lands at position ``perm[b]`` of the shuffled batch, whose contiguous groups are
  normalised together: its group is ``perm[b] // (B / groups)``. Each group holds exactly
  B / groups examples; an example shares its in-order group with probability about 1 / G, as
  with MoCo v2's ``torch.randperm`` across GPUs.
  """
  in_order = group_ids(batch_size, groups)
  return in_order[jax.random.permutation(rng, batch_size)]


class BatchNorm(nn.Module):
  """BatchNorm over the batch, or over G groups of it (shuffle-BN).

  Variables and numerics match ``flax.linen.BatchNorm`` (params ``scale``, ``bias``;
  batch_stats ``mean``, ``var``; float32 statistics, ``var = E[x^2] - E[x]^2``, biased running
  variance); the class is named ``BatchNorm`` so that unnamed instances keep flax's
  ``BatchNorm_<i>`` names and the parameter tree is unchanged. With groups, every example is
  normalised with its own group's statistics and the running averages move towards the mean of
  the G groups' statistics.

  Attributes:
    use_running_average: normalise with the running averages (evaluation) instead of the batch.
    momentum: running-average decay.
    epsilon: added to the variance.
    dtype: output dtype.
    scale_init: initialiser of ``scale``.
    groups: G, the number of equal groups (1: the whole batch).
    ids: int32 `[N]` each example's group in [0, G), or None for ``group_ids(N, G)``. ``N`` is
      the leading dimension of the input.
  """

  use_running_average: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = jnp.float32
  scale_init: Callable = nn.initializers.ones
  groups: int = 1
  ids: Any = None

  @nn.compact
  def __call__(self, x):
    """x: `[N, ..., C]` -> the normalised x, same shape, in ``dtype``."""
    features = x.shape[-1]
    scale = self.param("scale", self.scale_init, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
    axes = tuple(range(x.ndim - 1))
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    elif self.groups == 1 and self.ids is None:
      x32 = x.astype(jnp.float32)
      mean, mean2 = x32.mean(axes), jnp.square(x32).mean(axes)
      var = jnp.maximum(0.0, mean2 - jnp.square(mean))
      stats = (mean, var)
    else:
      mean, var, stats = self._group_stats(x)
    if not self.use_running_average and not self.is_initializing():
      m = self.momentum
      ra_mean.value = m * ra_mean.value + (1 - m) * stats[0]
      ra_var.value = m * ra_var.value + (1 - m) * stats[1]
    shape = (mean.shape[0],) + (1,) * (x.ndim - 2) + (features,) if mean.ndim == 2 else None
    if shape:  # per-example statistics [N, C]
      mean, var = mean.reshape(shape), var.reshape(shape)
    mul = jax.lax.rsqrt(var + self.epsilon) * scale
    y = (x - mean) * mul + bias
    return jnp.asarray(y, self.dtype)

  def _group_stats(self, x):
    """(mean, var) per example `[N, C]` from its group's statistics, and the mean of the G
    groups' (mean, var) `[C]` for the running averages."""
    n = x.shape[0]
    ids = group_ids(n, self.groups) if self.ids is None else self.ids
    x32 = x.astype(jnp.float32)
    spatial = tuple(range(1, x.ndim - 1))
    per_example = jnp.stack([x32.mean(spatial), jnp.square(x32).mean(spatial)])  # [2, N, C]
    one_hot = jax.nn.one_hot(ids, self.groups, dtype=jnp.float32)  # [N, G]
    # Exact float32 sums (a default-precision matmul may run in TF32 or bf16 on accelerators).
    sums = jnp.einsum("ng,snc->sgc", one_hot, per_example, precision=jax.lax.Precision.HIGHEST)
    group_mean = sums / one_hot.sum(axis=0)[None, :, None]  # [2, G, C]: E[x], E[x^2]
    group_var = jnp.maximum(0.0, group_mean[1] - jnp.square(group_mean[0]))
    mean = jnp.take(group_mean[0], ids, axis=0)
    var = jnp.take(group_var, ids, axis=0)
    return mean, var, (group_mean[0].mean(axis=0), group_var.mean(axis=0))


def conv2d(features: int, kernel: int, strides: int = 1, *, dtype, name=None):
  """A bias-free k x k convolution with torchvision's padding: k // 2 on every side."""
  pad = kernel // 2
  return nn.Conv(
    features,
    (kernel, kernel),
    strides,
    padding=((pad, pad), (pad, pad)),
    use_bias=False,
    dtype=dtype,
    name=name,
    kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
  )


def layers(dtype, train, bn_momentum, bn_groups=1, bn_group_ids=None):
  conv = functools.partial(conv2d, dtype=dtype)
  norm = functools.partial(
    BatchNorm,
    use_running_average=not train,
    momentum=bn_momentum,
    epsilon=1e-5,
    dtype=dtype,
    groups=bn_groups,
    ids=bn_group_ids,
  )
  return conv, norm


class BasicBlock(nn.Module):
  """Two 3x3 convolutions (ResNet-18/34)."""

  features: int
  strides: int
  conv: Any
  norm: Any
  zero_init_residual: bool = False
  expansion = 1

  @nn.compact
  def __call__(self, x):
    residual = x
    last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = self.conv(self.features, 3, self.strides)(x)
    y = nn.relu(self.norm()(y))
    y = self.conv(self.features, 3)(y)
    y = self.norm(scale_init=last_scale)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.features, 1, self.strides, name="downsample_conv")(residual)
      residual = self.norm(name="downsample_bn")(residual)
    return nn.relu(residual + y)


class Bottleneck(nn.Module):
  """1x1 - 3x3 (strided) - 1x1 convolutions (ResNet-50 and deeper)."""

  features: int
  strides: int
  conv: Any
  norm: Any
  zero_init_residual: bool = False
  expansion = 4

  @nn.compact
  def __call__(self, x):
    residual = x
    last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = nn.relu(self.norm()(self.conv(self.features, 1)(x)))
    y = nn.relu(self.norm()(self.conv(self.features, 3, self.strides)(y)))
    y = self.conv(self.features * 4, 1)(y)
    y = self.norm(scale_init=last_scale)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.features * 4, 1, self.strides, name="downsample_conv")(residual)
      residual = self.norm(name="downsample_bn")(residual)
    return nn.relu(residual + y)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class Stage(nn.Module):
  """One ResNet stage (torchvision's ``layer{i}``): ``num_blocks`` blocks, first one strided."""

  block: str
  features: int
  num_blocks: int
  strides: int
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x, train: bool, bn_groups: int = 1, bn_group_ids=None):
    conv, norm = layers(self.dtype, train, self.bn_momentum, bn_groups, bn_group_ids)
    for i in range(self.num_blocks):
      x = BLOCKS[self.block](
        self.features,
        self.strides if i == 0 else 1,
        conv,
        norm,
        self.zero_init_residual,
        name=f"block{i}",
      )(x)
    return x


class Trunk(nn.Module):
  """Stem plus the first ``len(stage_sizes)`` stages. Returns the feature map `[B, h, w, C]`."""

  block: str
  stage_sizes: Sequence[int]
  width: int = 64
  small_stem: bool = False
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x, train: bool, bn_groups: int = 1, bn_group_ids=None):
    conv, norm = layers(self.dtype, train, self.bn_momentum, bn_groups, bn_group_ids)
    if self.small_stem:
      x = conv(self.width, 3, name="stem_conv")(x)
    else:
      x = conv(self.width, 7, 2, name="stem_conv")(x)
    x = nn.relu(norm(name="stem_bn")(x))
    if not self.small_stem:
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for i, size in enumerate(self.stage_sizes):
      x = Stage(
        self.block,
        self.width * 2**i,
        size,
        1 if i == 0 else 2,
        self.dtype,
        self.bn_momentum,
        self.zero_init_residual,
        name=f"res{i + 2}",
      )(x, train, bn_groups, bn_group_ids)
    return x
