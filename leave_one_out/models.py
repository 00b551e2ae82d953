"""LooC's multi-head model (Flax linen) and the model section of the config.

``LooCModel`` computes, in one call, the shared backbone feature V and the embedding of every
space h = 0..n. Two layouts (docs/method.md, "The idea" and "LooC++"):

* LooC: the whole ResNet is shared; each space owns an MLP head on V.
* LooC++ (``looc_plus_plus=True``): the ResNet is shared up to res4; each space owns its own
  res5 stage, global pooling and MLP head. The downstream feature is the concatenation of the
  n+1 pooled res5 outputs.

The ResNet itself (torchvision's layout and padding, grouped BatchNorm for shuffle-BN) is
``leave_one_out.resnet``. Params are a plain pytree: ``{"params": ..., "batch_stats": ...}``.

The auxiliary objectives' heads (``leave_one_out.objectives``, off by default; fields
``OBJECTIVE_FIELDS``) live in the same tree, named ``head_<what>`` like the projection heads:
``head_augself`` (AugSelf, ``augself_predict``), ``head_rotation`` (E-SSL, ``rotation_logits``)
and ``head_condition`` (CASSLE: the augmentation descriptor's embedding, concatenated to every
projection head's input).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from leave_one_out import fields
from leave_one_out import objectives
from leave_one_out import resnet
from leave_one_out.objectives import augself
from leave_one_out.objectives import cassle
from leave_one_out.objectives import essl
from leave_one_out.resnet import ARCHITECTURES

STEMS = ("auto", "imagenet", "small")
DTYPES = ("float32", "bfloat16")
SMALL_IMAGE_SIZE = 64  # "auto" uses the small stem at or below this input size
KEY_BN = ("auto", "global", "shuffle")
# LooCModel's fields for the auxiliary objectives' heads (``objectives.model_fields``; the
# defaults build none). Plain strings and ints, so an exported model carries them as they are.
OBJECTIVE_FIELDS = (
  "augself_groups",
  "augself_hidden",
  "rotation_bottleneck",
  "condition_groups",
  "condition_width",
  "condition_depth",
)


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
    augself_groups: AugSelf's heads, one per parameter group, comma-separated ("crop,color");
      "" = none.
    augself_hidden: their hidden width.
    rotation_bottleneck: E-SSL's rotation head, its bottleneck width; 0 = none.
    condition_groups: CASSLE's descriptor groups, comma-separated; "" = unconditioned heads.
    condition_width, condition_depth: CASSLE's embedding MLP.
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
  augself_groups: str = ""
  augself_hidden: int = 512
  rotation_bottleneck: int = 0
  condition_groups: str = ""
  condition_width: int = 64
  condition_depth: int = 6

  def setup(self):
    # The auxiliary heads other methods call (``augself_predict``, ``rotation_logits``);
    # ``__call__`` creates their parameters at init.
    if self.augself_groups:
      groups = tuple(self.augself_groups.split(","))
      self.head_augself = augself.Heads(groups, self.augself_hidden, self.dtype, self.bn_momentum)
    if self.rotation_bottleneck:
      self.head_rotation = essl.Head(self.rotation_bottleneck, self.dtype)

  def augself_predict(self, pairs, train: bool = True):
    """AugSelf: feature pairs `[..., 2F]` -> {group: float32 `[..., d]`}."""
    return self.head_augself(pairs, train)

  def rotation_logits(self, features):
    """E-SSL: features `[N, F]` -> rotation logits float32 `[N, 4]`."""
    return self.head_rotation(features)

  @property
  def feature_dim(self) -> int:
    """Width of one pooled res5 feature (512 for ResNet-18, 2048 for ResNet-50 at width 64)."""
    block, _ = ARCHITECTURES[self.architecture]
    return self.width * 8 * resnet.BLOCKS[block].expansion

  @nn.compact
  def __call__(
    self,
    images,
    train: bool = True,
    bn_groups: int = 1,
    bn_group_ids=None,
    condition=None,
    heads: bool = True,
  ):
    """Forward pass.

    Args:
      images: `[B, S, S, 3]` float in [0, 1].
      train: BatchNorm uses batch statistics (and updates its running averages) when True.
      bn_groups: G, train mode only: every BatchNorm normalises G groups of the batch
        separately (``BatchNorm``); 1 = the whole batch.
      bn_group_ids: int32 `[B]`, each image's group in [0, G) (e.g. ``shuffled_group_ids``);
        None: G contiguous groups in order.
      condition: float32 `[B, C]`, each view's augmentation descriptor (CASSLE,
        ``objectives.cassle.descriptor``), for a model with ``condition_groups``; None: the
        descriptor of no augmentation. Ignored by other models.
      heads: False skips the projection heads (no "embeddings"; E-SSL's rotated views).

    Returns:
      dict with
        "feature": `[B, F]` the downstream feature: V for LooC, the concatenation of the
          pooled res5 features of every space (F = H * feature_dim) for LooC++;
        "space_features": `[B, H, feature_dim]` each space's pooled feature (all equal to V for
          LooC);
        "embeddings": `[B, H, embedding_dim]` each head's L2-normalised output, float32
          (absent with ``heads=False``);
        "condition_embedding": `[B, condition_width]`, the descriptor's embedding that every
          head reads (CASSLE models only).
    """
    block, sizes = ARCHITECTURES[self.architecture]
    x = (images.astype(jnp.float32) - jnp.array(IMAGENET_MEAN)) / jnp.array(IMAGENET_STD)
    x = x.astype(self.dtype)
    shared_stages = sizes[:-1] if self.looc_plus_plus else sizes
    x = resnet.Trunk(
      block,
      shared_stages,
      self.width,
      self.small_stem,
      self.dtype,
      self.bn_momentum,
      self.zero_init_residual,
      name="backbone",
    )(x, train, bn_groups, bn_group_ids)
    hidden = self.head_hidden or self.feature_dim
    pooled = []
    for h in range(self.num_spaces):
      if self.looc_plus_plus:
        y = resnet.Stage(
          block,
          self.width * 8,
          sizes[-1],
          2,
          self.dtype,
          self.bn_momentum,
          self.zero_init_residual,
          name=f"res5_space{h}",
        )(x, train, bn_groups, bn_group_ids)
        pooled.append(jnp.mean(y, axis=(1, 2)).astype(jnp.float32))
      elif h == 0:
        pooled.append(jnp.mean(x, axis=(1, 2)).astype(jnp.float32))
      else:
        pooled.append(pooled[0])
    space_features = jnp.stack(pooled, axis=1)
    feature = (
      space_features.reshape(space_features.shape[0], -1) if self.looc_plus_plus else pooled[0]
    )
    out = {"feature": feature, "space_features": space_features}
    if self.is_initializing():  # the auxiliary heads' parameters
      if self.augself_groups:
        self.augself_predict(jnp.concatenate([feature, feature], axis=-1), train)
      if self.rotation_bottleneck:
        self.rotation_logits(feature)
    if not heads:
      return out
    inputs = pooled
    if self.condition_groups:
      groups = self.condition_groups.split(",")
      if condition is None:
        condition = cassle.identity(groups, images.shape[0])
      e = cassle.Embedding(
        self.condition_width,
        self.condition_depth,
        self.dtype,
        self.bn_momentum,
        name="head_condition",
      )(condition, train)
      out["condition_embedding"] = e
      inputs = [jnp.concatenate([f, e], axis=-1) for f in pooled]
    out["embeddings"] = jnp.stack(
      [
        ProjectionHead(hidden, self.embedding_dim, self.dtype, name=f"head{h}")(f)
        for h, f in enumerate(inputs)
      ],
      axis=1,
    )
    return out


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def create_model(
  model_cfg, *, num_spaces: int, image_size: int, objective_fields: dict | None = None
) -> LooCModel:
  """Builds the model from a config's ``model`` section (``default_config()`` layout);
  ``objective_fields``: the auxiliary heads' fields (``objectives.model_fields``)."""
  check = fields.Section(model_cfg, "config.model")
  check.one_of("architecture", tuple(ARCHITECTURES))
  check.one_of("stem", STEMS)
  small = model_cfg.stem == "small" or (model_cfg.stem == "auto" and image_size <= SMALL_IMAGE_SIZE)
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
    **(objective_fields or {}),
  )


def build_model(cfg) -> LooCModel:
  """The model a full pretraining config describes (H = len(cfg.augment.spaces) + 1 spaces,
  and the heads of its active objectives)."""
  return create_model(
    cfg.model,
    num_spaces=len(cfg.augment.spaces) + 1,
    image_size=cfg.augment.image_size,
    objective_fields=objectives.model_fields(cfg),
  )


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
