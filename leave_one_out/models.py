"""ResNet backbones and LooC's multi-head model (Flax linen).

``LooCModel`` computes, in one call, the shared backbone feature V and the embedding of every
space h = 0..n. Two layouts (METHOD.md, "Spaces" and "LooC++"):

* LooC: the whole ResNet is shared; each space owns an MLP head on V.
* LooC++ (``looc_plus_plus=True``): the ResNet is shared up to res4; each space owns its own
  res5 stage, global pooling and MLP head. The downstream feature is the concatenation of the
  n+1 pooled res5 outputs.

ResNets follow torchvision's layout (v1.5: the stride sits on the 3x3 convolution; BatchNorm
after every convolution; zero-initialised last BN scale in each residual branch). Inputs of 64 px
or less use a small-image stem (3x3 stride-1 convolution, no max-pool) when ``stem="auto"``.
Params are a plain pytree: ``{"params": ..., "batch_stats": ...}``.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

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
  return m


def validate(m: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first invalid field of the model section."""
  def check(ok, field, message):
    if not ok:
      raise ValueError(f"config.model.{field} {message}")

  def positive_int(field, allow_zero=False):
    value = m[field]
    ok = isinstance(value, int) and not isinstance(value, bool) and (
        value >= 0 if allow_zero else value > 0)
    check(ok, field, f"must be an integer {'>= 0' if allow_zero else '> 0'}, got {value!r}")

  check(m.architecture in ARCHITECTURES, "architecture",
        f"must be one of {tuple(ARCHITECTURES)}, got {m.architecture!r}")
  check(m.stem in STEMS, "stem", f"must be one of {STEMS}, got {m.stem!r}")
  check(m.dtype in DTYPES, "dtype", f"must be one of {DTYPES}, got {m.dtype!r}")
  positive_int("width")
  positive_int("embedding_dim")
  positive_int("head_hidden", allow_zero=True)
  check(isinstance(m.looc_plus_plus, bool), "looc_plus_plus",
        f"must be True or False, got {m.looc_plus_plus!r}")
  check(0 <= m.bn_momentum < 1, "bn_momentum", f"must be in [0, 1), got {m.bn_momentum!r}")


class BasicBlock(nn.Module):
  """Two 3x3 convolutions (ResNet-18/34)."""
  features: int
  strides: int
  conv: Any
  norm: Any
  expansion = 1

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.features, (3, 3), self.strides)(x)
    y = nn.relu(self.norm()(y))
    y = self.conv(self.features, (3, 3))(y)
    y = self.norm(scale_init=nn.initializers.zeros)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.features, (1, 1), self.strides, name="downsample_conv")(residual)
      residual = self.norm(name="downsample_bn")(residual)
    return nn.relu(residual + y)


class Bottleneck(nn.Module):
  """1x1 - 3x3 (strided) - 1x1 convolutions (ResNet-50 and deeper)."""
  features: int
  strides: int
  conv: Any
  norm: Any
  expansion = 4

  @nn.compact
  def __call__(self, x):
    residual = x
    y = nn.relu(self.norm()(self.conv(self.features, (1, 1))(x)))
    y = nn.relu(self.norm()(self.conv(self.features, (3, 3), self.strides)(y)))
    y = self.conv(self.features * 4, (1, 1))(y)
    y = self.norm(scale_init=nn.initializers.zeros)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.features * 4, (1, 1), self.strides,
                           name="downsample_conv")(residual)
      residual = self.norm(name="downsample_bn")(residual)
    return nn.relu(residual + y)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _layers(dtype, train, bn_momentum):
  conv = functools.partial(
      nn.Conv, use_bias=False, dtype=dtype,
      kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"))
  norm = functools.partial(
      nn.BatchNorm, use_running_average=not train, momentum=bn_momentum, epsilon=1e-5,
      dtype=dtype)
  return conv, norm


class Stage(nn.Module):
  """One ResNet stage (torchvision's ``layer{i}``): ``num_blocks`` blocks, first one strided."""
  block: str
  features: int
  num_blocks: int
  strides: int
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool):
    conv, norm = _layers(self.dtype, train, self.bn_momentum)
    for i in range(self.num_blocks):
      x = BLOCKS[self.block](
          self.features, self.strides if i == 0 else 1, conv, norm, name=f"block{i}")(x)
    return x


class Trunk(nn.Module):
  """Stem plus the first ``len(stage_sizes)`` stages. Returns the feature map `[B, h, w, C]`."""
  block: str
  stage_sizes: Sequence[int]
  width: int = 64
  small_stem: bool = False
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool):
    conv, norm = _layers(self.dtype, train, self.bn_momentum)
    if self.small_stem:
      x = conv(self.width, (3, 3), name="stem_conv")(x)
    else:
      x = conv(self.width, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="stem_conv")(x)
    x = nn.relu(norm(name="stem_bn")(x))
    if not self.small_stem:
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for i, size in enumerate(self.stage_sizes):
      x = Stage(self.block, self.width * 2**i, size, 1 if i == 0 else 2, self.dtype,
                self.bn_momentum, name=f"res{i + 2}")(x, train)
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
    looc_plus_plus: each space owns its res5 stage (METHOD.md, LooC++).
    small_stem: 3x3 stride-1 stem without max-pool, for small images.
    dtype: computation dtype (params stay float32).
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

  @property
  def feature_dim(self) -> int:
    """Width of one pooled res5 feature (512 for ResNet-18, 2048 for ResNet-50 at width 64)."""
    block, _ = ARCHITECTURES[self.architecture]
    return self.width * 8 * BLOCKS[block].expansion

  @nn.compact
  def __call__(self, images, train: bool = True):
    """Forward pass.

    Args:
      images: `[B, S, S, 3]` float in [0, 1].
      train: BatchNorm uses batch statistics (and updates its running averages) when True.

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
              name="backbone")(x, train)
    hidden = self.head_hidden or self.feature_dim
    pooled = []
    for h in range(self.num_spaces):
      if self.looc_plus_plus:
        y = Stage(block, self.width * 8, sizes[-1], 2, self.dtype, self.bn_momentum,
                  name=f"res5_space{h}")(x, train)
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
  if model_cfg.architecture not in ARCHITECTURES:
    raise ValueError(f"config.model.architecture must be one of {sorted(ARCHITECTURES)}, "
                     f"got {model_cfg.architecture!r}")
  if model_cfg.stem not in STEMS:
    raise ValueError(f"config.model.stem must be one of {STEMS}, got {model_cfg.stem!r}")
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
  )


def build_model(cfg) -> LooCModel:
  """The model a full pretraining config describes (H = len(cfg.augment.spaces) + 1 spaces)."""
  return create_model(cfg.model, num_spaces=len(cfg.augment.spaces) + 1,
                      image_size=cfg.augment.image_size)
