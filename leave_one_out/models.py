"""ResNet backbones and LooC's multi-head model (Flax linen).

``LooCModel`` computes, in one call, the shared backbone feature V and the embedding of every
space h = 0..n. Two layouts (docs/method.md, "The idea" and "LooC++"):

* LooC: the whole ResNet is shared; each space owns an MLP head on V.
* LooC++ (``looc_plus_plus=True``): the ResNet is shared up to res4; each space owns its own
  res5 stage, global pooling and MLP head. The downstream feature is the concatenation of the
  n+1 pooled res5 outputs.

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
``stem="auto"``. Params are a plain pytree: ``{"params": ..., "batch_stats": ...}``.

BatchNorm (``BatchNorm``) normalises over the global batch by default. For MoCo v2's shuffle-BN
(``train.train_step``) it can instead normalise in G groups of the batch: ``bn_groups=G`` splits
the batch into G equal contiguous groups in order (MoCo's per-GPU BatchNorm), and
``bn_group_ids`` `[B]` assigns each example to a group explicitly (a shuffled assignment: the
statistics of a randomly permuted batch, with the outputs back in the original order, without
moving any data).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from leave_one_out import fields

ARCHITECTURES = {
    # name: (block, stage sizes)
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    # A smaller-than-ResNet-18 net for CPU demos and tests: one block per stage.
    "resnet10": ("basic", (1, 1, 1, 1)),
}
STEMS = ("auto", "imagenet", "small")
DTYPES = ("float32", "bfloat16")
SMALL_IMAGE_SIZE = 64  # "auto" uses the small stem at or below this input size
KEY_BN = ("auto", "global", "shuffle")


def default_config() -> ml_collections.ConfigDict:
  """The model section (``config.model``): MoCo v2's ResNet-50 with 2048-2048-128 heads."""
  m = ml_collections.ConfigDict()
  m.architecture = "resnet50"  # resnet10 | resnet18 | resnet34 | resnet50 | resnet101
  m.width = 64  # channels of the first stage (64 = torchvision)
  m.embedding_dim = 128  # output of each head
  m.head_hidden = 0  # hidden width of each head; 0 = the backbone feature dim (MoCo v2)
  m.looc_plus_plus = False  # each space owns its res5 stage (LooC++)
  m.stem = "auto"  # auto | imagenet | small (3x3 stride 1, no max-pool; auto: <= 64 px)
  m.dtype = "bfloat16"  # float32 | bfloat16 (computation; params stay float32)
  m.bn_momentum = 0.9  # running-average decay of BatchNorm statistics
  m.zero_init_residual = False  # last BN of each residual branch starts at scale 0 (Goyal et
  #                               al.); False = scale 1 (torchvision, MoCo)
  m.key_bn = "auto"  # auto | global | shuffle: BatchNorm statistics of the key encoder. shuffle
  #                    (MoCo v2's shuffle-BN): the key batch is normalised in bn_groups groups
  #                    of a random permutation of the images, the query batch in the same number
  #                    of groups in order, so a key's statistics are not its query's; global:
  #                    both over the whole batch (MoCo v3); auto: shuffle with a queue
  #                    (loss.queue_size > 0) and >= 2 groups, else global
  m.bn_groups = 8  # G for shuffle-BN (MoCo v2: 8 GPUs x 32 images, whatever the number of
  #                  devices); 0 = the number of devices
  return m


def validate(m: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first invalid field of the model section."""
  check = fields.Section(m, "config.model")
  check.one_of("architecture", tuple(ARCHITECTURES))
  check.one_of("stem", STEMS)
  check.one_of("dtype", DTYPES)
  check.integer("width", 1)
  check.integer("embedding_dim", 1)
  check.integer("head_hidden", 0)
  check.boolean("looc_plus_plus")
  check.number("bn_momentum", 0.0, 1.0, high_open=True)
  check.boolean("zero_init_residual")
  check.one_of("key_bn", KEY_BN)
  check.integer("bn_groups", 0)


def group_ids(batch_size: int, groups: int) -> jax.Array:
  """int32 `[B]`: contiguous groups in order, example b in group ``b // (B / groups)``."""
  if groups < 1 or batch_size % groups:
    raise ValueError(f"a batch of {batch_size} cannot be split into {groups} equal BatchNorm "
                     "groups")
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


def _conv(features: int, kernel: int, strides: int = 1, *, dtype, name=None):
  """A bias-free k x k convolution with torchvision's padding: k // 2 on every side."""
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides, padding=((pad, pad), (pad, pad)),
                 use_bias=False, dtype=dtype, name=name,
                 kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"))


def _layers(dtype, train, bn_momentum, bn_groups=1, bn_group_ids=None):
  conv = functools.partial(_conv, dtype=dtype)
  norm = functools.partial(
      BatchNorm, use_running_average=not train, momentum=bn_momentum, epsilon=1e-5,
      dtype=dtype, groups=bn_groups, ids=bn_group_ids)
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
    conv, norm = _layers(self.dtype, train, self.bn_momentum, bn_groups, bn_group_ids)
    for i in range(self.num_blocks):
      x = BLOCKS[self.block](
          self.features, self.strides if i == 0 else 1, conv, norm, self.zero_init_residual,
          name=f"block{i}")(x)
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
    conv, norm = _layers(self.dtype, train, self.bn_momentum, bn_groups, bn_group_ids)
    if self.small_stem:
      x = conv(self.width, 3, name="stem_conv")(x)
    else:
      x = conv(self.width, 7, 2, name="stem_conv")(x)
    x = nn.relu(norm(name="stem_bn")(x))
    if not self.small_stem:
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for i, size in enumerate(self.stage_sizes):
      x = Stage(self.block, self.width * 2**i, size, 1 if i == 0 else 2, self.dtype,
                self.bn_momentum, self.zero_init_residual, name=f"res{i + 2}")(
                    x, train, bn_groups, bn_group_ids)
    return x


class ProjectionHead(nn.Module):
  """MoCo v2 head: Linear(F, hidden) - ReLU - Linear(hidden, out), L2-normalised output."""
  hidden: int
  out: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="fc1")(x))
    x = nn.Dense(self.out, dtype=self.dtype, name="fc2")(x).astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class LooCModel(nn.Module):
  """Shared ResNet backbone plus ``num_spaces`` projection heads, in one forward pass.

  Attributes:
    architecture: a key of ``ARCHITECTURES``.
    num_spaces: H = n + 1 (space 0 all-invariant, space i sensitive to augmentation i).
    width: channels of the first stage (64 in torchvision; smaller for CPU demos).
    embedding_dim: output of each head (128 in MoCo v2).
    head_hidden: hidden width of each head; 0 means "the feature dim" (MoCo v2).
    looc_plus_plus: each space owns its res5 stage (docs/method.md, "LooC++").
    small_stem: 3x3 stride-1 stem without max-pool, for small images.
    dtype: computation dtype (params stay float32).
    bn_momentum: running-average decay of every BatchNorm.
    zero_init_residual: the last BatchNorm of each residual branch starts at scale 0 (default
      1, as torchvision and MoCo). Changes only the initial values, not the parameter tree.
  """
  architecture: str = "resnet50"
  num_spaces: int = 1
  width: int = 64
  embedding_dim: int = 128
  head_hidden: int = 0
  looc_plus_plus: bool = False
  small_stem: bool = False
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  zero_init_residual: bool = False

  @property
  def feature_dim(self) -> int:
    """Width of one pooled res5 feature (512 for ResNet-18, 2048 for ResNet-50 at width 64)."""
    block, _ = ARCHITECTURES[self.architecture]
    return self.width * 8 * BLOCKS[block].expansion

  @nn.compact
  def __call__(self, images, train: bool = True, bn_groups: int = 1, bn_group_ids=None):
    """Forward pass.

    Args:
      images: `[B, S, S, 3]` float in [0, 1].
      train: BatchNorm uses batch statistics (and updates its running averages) when True.
      bn_groups: G, train mode only: every BatchNorm normalises G groups of the batch
        separately (``BatchNorm``); 1 = the whole batch.
      bn_group_ids: int32 `[B]`, each image's group in [0, G) (e.g. ``shuffled_group_ids``);
        None: G contiguous groups in order.

    Returns:
      dict with
        "feature": `[B, F]` the downstream feature: V for LooC, the concatenation of the
          pooled res5 features of every space (F = H * feature_dim) for LooC++;
        "space_features": `[B, H, feature_dim]` each space's pooled feature (all equal to V for
          LooC);
        "embeddings": `[B, H, embedding_dim]` each head's L2-normalised output, float32.
    """
    block, sizes = ARCHITECTURES[self.architecture]
    x = (images.astype(jnp.float32) - jnp.array(IMAGENET_MEAN)) / jnp.array(IMAGENET_STD)
    x = x.astype(self.dtype)
    shared_stages = sizes[:-1] if self.looc_plus_plus else sizes
    x = Trunk(block, shared_stages, self.width, self.small_stem, self.dtype, self.bn_momentum,
              self.zero_init_residual, name="backbone")(x, train, bn_groups, bn_group_ids)
    hidden = self.head_hidden or self.feature_dim
    pooled = []
    for h in range(self.num_spaces):
      if self.looc_plus_plus:
        y = Stage(block, self.width * 8, sizes[-1], 2, self.dtype, self.bn_momentum,
                  self.zero_init_residual, name=f"res5_space{h}")(
                      x, train, bn_groups, bn_group_ids)
        pooled.append(jnp.mean(y, axis=(1, 2)).astype(jnp.float32))
      elif h == 0:
        pooled.append(jnp.mean(x, axis=(1, 2)).astype(jnp.float32))
      else:
        pooled.append(pooled[0])
    space_features = jnp.stack(pooled, axis=1)
    embeddings = jnp.stack(
        [ProjectionHead(hidden, self.embedding_dim, self.dtype, name=f"head{h}")(f)
         for h, f in enumerate(pooled)], axis=1)
    feature = space_features.reshape(space_features.shape[0], -1) if self.looc_plus_plus \
        else pooled[0]
    return {"feature": feature, "space_features": space_features, "embeddings": embeddings}


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def create_model(model_cfg, *, num_spaces: int, image_size: int) -> LooCModel:
  """Builds the model from a config's ``model`` section (``default_config()`` layout)."""
  check = fields.Section(model_cfg, "config.model")
  check.one_of("architecture", tuple(ARCHITECTURES))
  check.one_of("stem", STEMS)
  small = model_cfg.stem == "small" or (
      model_cfg.stem == "auto" and image_size <= SMALL_IMAGE_SIZE)
  return LooCModel(
      architecture=model_cfg.architecture,
      num_spaces=num_spaces,
      width=model_cfg.width,
      embedding_dim=model_cfg.embedding_dim,
      head_hidden=model_cfg.head_hidden,
      looc_plus_plus=model_cfg.looc_plus_plus,
      small_stem=small,
      dtype=jnp.bfloat16 if model_cfg.dtype == "bfloat16" else jnp.float32,
      bn_momentum=model_cfg.bn_momentum,
      zero_init_residual=model_cfg.zero_init_residual,
  )


def build_model(cfg) -> LooCModel:
  """The model a full pretraining config describes (H = len(cfg.augment.spaces) + 1 spaces)."""
  return create_model(cfg.model, num_spaces=len(cfg.augment.spaces) + 1,
                      image_size=cfg.augment.image_size)


def key_bn_mode(model_cfg, queue_size: int, num_devices: int) -> str:
  """What ``model.key_bn`` means for a run: "global" or "shuffle".

  "auto" is "shuffle" with a queue (MoCo v2: per-batch statistics would tell the current keys
  from the queued ones) when there are at least two BatchNorm groups, else "global" (MoCo v3).
  """
  mode = model_cfg.key_bn
  if mode == "auto":
    return "shuffle" if queue_size and bn_groups(model_cfg, num_devices) > 1 else "global"
  return mode


def bn_groups(model_cfg, num_devices: int) -> int:
  """G, the number of BatchNorm groups under shuffle-BN: ``model.bn_groups`` or the devices."""
  return int(model_cfg.bn_groups) or num_devices
