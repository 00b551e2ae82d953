r"""LooC's network in one file that needs only jax, flax and numpy: copy it into your project.

Nothing here imports ``leave_one_out`` (or ml_collections): a file exported with
``python -m leave_one_out.pretrained --workdir=DIR --out=looc.msgpack`` runs with this file alone::

  import standalone  # this file, copied next to your code
  network, variables = standalone.load("looc.msgpack")  # the LooC model, as trained
  out = network.apply(variables, images)  # images [B, S, S, 3] float in [0, 1]
  out["feature"], out["embeddings"]  # [B, F], [B, H, D]

  backbone, variables = standalone.load_backbone("looc.msgpack")  # normalisation + ResNet
  features = backbone.apply(variables, images)  # [B, F], the downstream feature

``Backbone`` is a ``flax.linen`` module (ImageNet input normalisation, the ResNet, global
pooling) that works as a submodule of your own model and fine-tunes like any other
(``train=True`` with ``mutable=["batch_stats"]``); inside the package,
``leave_one_out.load_backbone`` returns it from a workdir, a checkpoint or an exported file.

The parameter tree and the numbers are ``leave_one_out.models.LooCModel``'s (tests/
test_standalone.py checks both): torchvision's ResNet layout and padding (every k x k
convolution pads k // 2; v1.5, the stride on the 3x3 convolution), BatchNorm over the whole
batch, MoCo v2 heads (Linear - ReLU - Linear, L2-normalised), CASSLE's descriptor MLP when the
model has one. The training-only parts of the package's model (BatchNorm in groups for
shuffle-BN, AugSelf's and E-SSL's prediction heads) are left out.
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

ARCHITECTURES = {
  "resnet18": ("basic", (2, 2, 2, 2)),
  "resnet34": ("basic", (3, 4, 6, 3)),
  "resnet50": ("bottleneck", (3, 4, 6, 3)),
  "resnet101": ("bottleneck", (3, 4, 23, 3)),
  "resnet10": ("basic", (1, 1, 1, 1)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv(features: int, kernel: int, strides: int = 1, *, dtype, name=None):
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


def _layers(dtype, train: bool, bn_momentum: float):
  conv = functools.partial(_conv, dtype=dtype)
  norm = functools.partial(
    nn.BatchNorm, use_running_average=not train, momentum=bn_momentum, epsilon=1e-5, dtype=dtype
  )
  return conv, norm


class _Block(nn.Module):
  """A residual block: "basic" (two 3x3) or "bottleneck" (1x1 - strided 3x3 - 1x1)."""

  block: str
  features: int
  strides: int
  dtype: Any
  train: bool
  bn_momentum: float

  @nn.compact
  def __call__(self, x):
    conv, norm = _layers(self.dtype, self.train, self.bn_momentum)
    out = self.features * EXPANSION[self.block]
    if self.block == "basic":
      y = nn.relu(norm()(conv(self.features, 3, self.strides)(x)))
      y = norm()(conv(self.features, 3)(y))
    else:
      y = nn.relu(norm()(conv(self.features, 1)(x)))
      y = nn.relu(norm()(conv(self.features, 3, self.strides)(y)))
      y = norm()(conv(out, 1)(y))
    if x.shape != y.shape:
      x = norm(name="downsample_bn")(conv(out, 1, self.strides, name="downsample_conv")(x))
    return nn.relu(x + y)


class _Stage(nn.Module):
  block: str
  features: int
  num_blocks: int
  strides: int
  dtype: Any
  bn_momentum: float

  @nn.compact
  def __call__(self, x, train: bool):
    for i in range(self.num_blocks):
      strides = self.strides if i == 0 else 1
      x = _Block(
        self.block, self.features, strides, self.dtype, train, self.bn_momentum, name=f"block{i}"
      )(x)
    return x


class _Trunk(nn.Module):
  block: str
  stage_sizes: tuple
  width: int
  small_stem: bool
  dtype: Any
  bn_momentum: float

  @nn.compact
  def __call__(self, x, train: bool):
    conv, norm = _layers(self.dtype, train, self.bn_momentum)
    kernel, strides = (3, 1) if self.small_stem else (7, 2)
    x = conv(self.width, kernel, strides, name="stem_conv")(x)
    x = nn.relu(norm(name="stem_bn")(x))
    if not self.small_stem:
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for i, size in enumerate(self.stage_sizes):
      x = _Stage(
        self.block,
        self.width * 2**i,
        size,
        1 if i == 0 else 2,
        self.dtype,
        self.bn_momentum,
        name=f"res{i + 2}",
      )(x, train)
    return x


def _space_features(module, images, train: bool) -> list:
  """Each space's pooled float32 feature `[B, F]` (one list entry per space; LooC: one)."""
  block, sizes = ARCHITECTURES[module.architecture]
  x = (images.astype(jnp.float32) - jnp.array(IMAGENET_MEAN)) / jnp.array(IMAGENET_STD)
  x = x.astype(module.dtype)
  shared = sizes[:-1] if module.looc_plus_plus else sizes
  x = _Trunk(
    block,
    tuple(shared),
    module.width,
    module.small_stem,
    module.dtype,
    module.bn_momentum,
    name="backbone",
  )(x, train)
  pool = lambda y: jnp.mean(y, axis=(1, 2)).astype(jnp.float32)
  if not module.looc_plus_plus:
    return [pool(x)]
  pooled = []
  for h in range(module.num_spaces):
    stage = _Stage(
      block, module.width * 8, sizes[-1], 2, module.dtype, module.bn_momentum, name=f"res5_space{h}"
    )
    pooled.append(pool(stage(x, train)))
  return pooled


class Backbone(nn.Module):
  """ImageNet normalisation, the ResNet and global pooling: images -> the downstream feature.

  ``__call__(images [B, S, S, 3] float in [0, 1], train=False) -> [B, F]`` float32: the pooled
  res5 feature (LooC, F = 512 or 2048 at width 64), or every space's pooled res5 feature
  concatenated (LooC++, ``num_spaces`` x that). ``train=True`` normalises with the batch's
  statistics and updates the running averages (``mutable=["batch_stats"]``).
  """

  architecture: str = "resnet50"
  width: int = 64
  small_stem: bool = False
  looc_plus_plus: bool = False
  num_spaces: int = 1  # LooC++ only: how many res5 stages
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, images, train: bool = False):
    return jnp.concatenate(_space_features(self, images, train), axis=-1)


class ProjectionHead(nn.Module):
  """MoCo v2's head: Linear(F, hidden) - ReLU - Linear(hidden, out), L2-normalised output."""

  hidden: int
  out: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="fc1")(x))
    x = nn.Dense(self.out, dtype=self.dtype, name="fc2")(x).astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# CASSLE's descriptor: each group's length, in sorted group order.
CONDITION_GROUPS = {
  "blur": 1,
  "color": 4,
  "color_diff": 3,
  "crop": 4,
  "flip": 1,
  "grayscale": 1,
  "rotation": 4,
}


def identity_condition(groups, batch_size: int):
  """`[B, C]`: CASSLE's descriptor of a view with no augmentation (the whole image, nothing
  applied): crop (centre 0.5, 0.5, size 1, 1), every other group 0."""
  parts = [
    np.array([0.5, 0.5, 1.0, 1.0]) if g == "crop" else np.zeros((CONDITION_GROUPS[g],))
    for g in sorted(groups)
  ]
  row = jnp.asarray(np.concatenate(parts), jnp.float32)
  return jnp.broadcast_to(row, (batch_size, row.shape[0]))


class ConditionEmbedding(nn.Module):
  """CASSLE's descriptor MLP: `[B, C]` -> float32 `[B, width]` (Dense - BN - ReLU, no last
  ReLU)."""

  width: int
  depth: int
  dtype: Any
  bn_momentum: float
  train: bool

  @nn.compact
  def __call__(self, d):
    _, norm = _layers(self.dtype, self.train, self.bn_momentum)
    y = d.astype(self.dtype)
    for i in range(1, self.depth + 1):
      y = nn.Dense(self.width, use_bias=False, dtype=self.dtype, name=f"fc{i}")(y)
      y = norm(name=f"bn{i}")(y)
      y = nn.relu(y) if i < self.depth else y
    return y.astype(jnp.float32)


class LooCNetwork(nn.Module):
  """The backbone plus one projection head per space: ``LooCModel``'s forward pass.

  ``__call__(images, train=False)`` returns {"feature": `[B, F]`, "space_features":
  `[B, H, F_space]`, "embeddings": `[B, H, D]` L2-normalised}.
  """

  architecture: str = "resnet50"
  num_spaces: int = 1
  width: int = 64
  embedding_dim: int = 128
  head_hidden: int = 0  # 0 = the pooled feature's width (MoCo v2)
  looc_plus_plus: bool = False
  small_stem: bool = False
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  # Auxiliary objectives' fields. AugSelf's and E-SSL's heads (``head_augself``,
  # ``head_rotation``) serve only their training losses: their arrays ride along in the file and
  # are not used here. CASSLE's heads read the augmentation descriptor's embedding too.
  augself_groups: str = ""
  augself_hidden: int = 512
  rotation_bottleneck: int = 0
  condition_groups: str = ""  # CASSLE's descriptor groups, comma-separated
  condition_width: int = 64
  condition_depth: int = 6

  @nn.compact
  def __call__(self, images, train: bool = False, condition=None):
    """images `[B, S, S, 3]` in [0, 1]; condition: CASSLE's descriptors `[B, C]` of the views
    (None: an unaugmented view, ``identity_condition``), only for a model with
    ``condition_groups``."""
    pooled = _space_features(self, images, train)
    pooled = pooled * (self.num_spaces if len(pooled) == 1 else 1)
    hidden = self.head_hidden or pooled[0].shape[-1]
    inputs = pooled
    if self.condition_groups:
      groups = self.condition_groups.split(",")
      if condition is None:
        condition = identity_condition(groups, images.shape[0])
      e = ConditionEmbedding(
        self.condition_width,
        self.condition_depth,
        self.dtype,
        self.bn_momentum,
        train,
        name="head_condition",
      )(condition)
      inputs = [jnp.concatenate([f, e], axis=-1) for f in pooled]
    embeddings = [
      ProjectionHead(hidden, self.embedding_dim, self.dtype, name=f"head{h}")(f)
      for h, f in enumerate(inputs)
    ]
    space_features = jnp.stack(pooled, axis=1)
    feature = jnp.concatenate(pooled, axis=-1) if self.looc_plus_plus else pooled[0]
    return {
      "feature": feature,
      "space_features": space_features,
      "embeddings": jnp.stack(embeddings, axis=1),
    }


def read(path: str) -> dict:
  """The payload of an exported msgpack file (layout: leave_one_out/pretrained.py)."""
  with open(path, "rb") as f:
    payload = flax.serialization.msgpack_restore(f.read())
  if not isinstance(payload, dict) or payload.get("format") != "leave_one_out.export":
    raise ValueError(f"{path} is not a file written by leave_one_out.pretrained (msgpack export)")
  return payload


def _fields(payload: dict) -> dict:
  m = dict(payload["model"])
  m.pop("zero_init_residual", None)  # an initial value only
  m["dtype"] = jnp.bfloat16 if m["dtype"] == "bfloat16" else jnp.float32
  return m


def _arrays(tree):
  return {k: _arrays(v) if isinstance(v, dict) else np.asarray(v) for k, v in tree.items()}


def load(path: str):
  """``(LooCNetwork, {"params", "batch_stats"})`` of an exported file written with its heads."""
  payload = read(path)
  if not payload["include_heads"]:
    raise ValueError(f"{path} was exported without heads: use load_backbone")
  variables = {"params": _arrays(payload["params"]), "batch_stats": _arrays(payload["batch_stats"])}
  return LooCNetwork(**_fields(payload)), variables


def backbone_of(fields: dict, variables: dict, dtype=None):
  """``(Backbone, its variables)`` cut from a LooC model's fields and variables (no heads)."""
  module = Backbone(
    architecture=fields["architecture"],
    width=int(fields["width"]),
    small_stem=bool(fields["small_stem"]),
    looc_plus_plus=bool(fields["looc_plus_plus"]),
    num_spaces=int(fields["num_spaces"]),
    dtype=fields["dtype"] if dtype is None else dtype,
    bn_momentum=float(fields["bn_momentum"]),
  )
  keep = lambda tree: {k: v for k, v in tree.items() if not k.startswith("head")}
  return module, {name: keep(tree) for name, tree in variables.items()}


def load_backbone(path: str, dtype=None):
  """``(Backbone, {"params", "batch_stats"})`` of an exported file; ``dtype`` overrides the
  computation dtype it was trained with (e.g. ``jnp.float32`` to fine-tune in full precision)."""
  payload = read(path)
  variables = {"params": _arrays(payload["params"]), "batch_stats": _arrays(payload["batch_stats"])}
  return backbone_of(_fields(payload), variables, dtype)
