"""CASSLE (Przewięźlikowski et al., 2023): condition the projection heads on the augmentations.

Each view's augmentation parameters become a descriptor (``descriptor``), a small MLP embeds it
(``Embedding``, in ``models.LooCModel`` as ``head_condition``) and the embedding is concatenated
to the backbone feature at the input of every projection head: ``head_h([V_h, e(d)])``. The
backbone alone is the downstream feature; the heads learn to use what the descriptor says, so
the backbone need not discard it. There is no extra loss term.

Both encoders are conditioned, each view on its own descriptor: the query by the online
embedding MLP, every key (k_0, k_1..) by the key encoder's EMA copy of it, in train mode, as
CASSLE's MoCo trainer does (``target_projector = deepcopy(projector)``, aug MLP included).
Features read with no descriptor (evaluation, ``extract``) are conditioned on the identity
descriptor ("no augmentation": the whole image, nothing applied), ``identity``.

Descriptor groups, concatenated in sorted order (CASSLE's ``torch.cat`` over ``sorted``):

  blur        1  sigma (MoCo v2 units: pixels of a 224-px image), 0 where not applied
  color       4  the jitter factors centred and divided by their range's width, 0 where not applied
  color_diff  3  per channel, the image's mean before the jitter minus after it (on [0, 1]
                 pixels, the cropped and flipped view, before grayscale), 0 where not applied
  crop        4  (cy, cx, h, w), the centre mirrored (cx -> 1 - cx) where the view is flipped
  flip        1  flipped
  grayscale   1  grayscale applied
  rotation    4  one-hot k (not in CASSLE, whose pipeline has no rotation)

The embedding MLP is CASSLE's ``load_mlp(C, width, width, num_layers=depth)`` with its last
BatchNorm: (Linear without bias - BatchNorm - ReLU) x (depth - 1), Linear without bias,
BatchNorm. CASSLE's ImageNet-100 recipe: groups blur, color, color_diff, crop, grayscale (13
values), width 64, depth 6.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from leave_one_out import augment
from leave_one_out import fields
from leave_one_out import render
from leave_one_out import resnet

NAME = "cassle"
GROUPS = {
  "blur": 1,
  "color": 4,
  "color_diff": 3,
  "crop": 4,
  "flip": 1,
  "grayscale": 1,
  "rotation": 4,
}


def default_config() -> ml_collections.ConfigDict:
  """``config.objectives.cassle``: CASSLE's ImageNet-100 descriptor and MLP, off."""
  c = ml_collections.ConfigDict()
  c.enabled = False  # condition every projection head on the view's augmentations (no weight:
  #                    CASSLE adds no loss term)
  c.groups = ("blur", "color", "color_diff", "crop", "grayscale")  # descriptor groups (docstring);
  #          CASSLE's ImageNet-100 recipe; concatenated in sorted order whatever the order here
  c.width = 64  # the embedding MLP's width and output size (CASSLE ImageNet-100: 64)
  c.depth = 6  # its number of Linear layers (CASSLE ImageNet-100: 6)
  return c


def validate(c: ml_collections.ConfigDict, cfg: ml_collections.ConfigDict) -> None:
  del cfg
  check = fields.Section(c, f"config.objectives.{NAME}")
  check.boolean("enabled")
  groups = c.groups
  check.check(
    isinstance(groups, (tuple, list)) and len(groups) > 0 and len(set(groups)) == len(groups),
    "groups",
    f"must be a non-empty tuple of distinct groups out of {tuple(GROUPS)}, got {groups!r}",
  )
  for group in groups:
    check.check(group in GROUPS, "groups", f"has unknown group {group!r}; known: {tuple(GROUPS)}")
  check.integer("width", 1)
  check.integer("depth", 1)


def active(c) -> bool:
  return c.enabled


def model_fields(c) -> dict:
  return {
    "condition_groups": ",".join(sorted(c.groups)),
    "condition_width": int(c.width),
    "condition_depth": int(c.depth),
  }


def size(groups) -> int:
  """C, the descriptor's length."""
  return sum(GROUPS[g] for g in groups)


def descriptor(params, groups, augment_cfg, color_diff=None) -> jax.Array:
  """One descriptor per view: parameter groups with leaves `[...]` -> float32 `[..., C]`.

  ``groups`` in any order (concatenated sorted); ``color_diff`` `[..., 3]` (``color_shift``)
  is needed when "color_diff" is one of them.
  """
  parts = {
    "blur": lambda: augment.blur_sigma(params["blur"]),
    "color": lambda: augment.color_factors(params["color"], augment_cfg),
    "color_diff": lambda: color_diff,
    "crop": lambda: _mirrored_box(params),
    "flip": lambda: params["flip"]["apply"][..., None],
    "grayscale": lambda: params["color"]["gray"][..., None],
    "rotation": lambda: jax.nn.one_hot(params["rotation"]["k"], 4),
  }
  return jnp.concatenate([parts[g]().astype(jnp.float32) for g in sorted(groups)], axis=-1)


def _mirrored_box(params):
  box = augment.crop_center_size(params["crop"])
  cx = jnp.where(params["flip"]["apply"], 1 - box[..., 1], box[..., 1])
  return box.at[..., 1].set(cx)


def identity(groups, batch_size: int) -> jax.Array:
  """`[B, C]`: the descriptor of a view with no augmentation (the whole image, nothing applied)."""
  parts = [
    jnp.array([0.5, 0.5, 1.0, 1.0]) if g == "crop" else jnp.zeros((GROUPS[g],))
    for g in sorted(groups)
  ]
  return jnp.broadcast_to(jnp.concatenate(parts).astype(jnp.float32), (batch_size, size(groups)))


def color_shift(images, params, augment_cfg) -> jax.Array:
  """`[V, B, 3]`: each view's per-channel mean before its colour jitter minus after it, on the
  cropped [0, 1] view (flip does not move a mean; grayscale comes after), 0 where the jitter was
  not applied. Renders every view twice more, crop and colour only."""
  v = augment_cfg.copy_and_resolve_references()
  for name in ("flip", "blur", "rotation", "texture"):
    v[name].enabled = False
  after = {**params, "color": {**params["color"], "gray": jnp.zeros_like(params["color"]["gray"])}}
  before = {**after, "color": {**after["color"], "apply": jnp.zeros_like(params["color"]["apply"])}}
  mean = lambda p: jnp.mean(render.render(images, p, v), axis=(-3, -2))
  shift = mean(before) - mean(after)
  return jnp.where(params["color"]["apply"][..., None], shift, 0.0)


def condition(images, view_params, c, augment_cfg) -> jax.Array:
  """Every view's descriptor `[V, B, C]` (``view_params`` leaves `[V, B, ...]`)."""
  shift = color_shift(images, view_params, augment_cfg) if "color_diff" in c.groups else None
  return descriptor(view_params, c.groups, augment_cfg, shift)


class Embedding(nn.Module):
  """CASSLE's augmentation MLP: descriptors `[N, C]` -> float32 embeddings `[N, width]`."""

  width: int = 64
  depth: int = 6
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, d, train: bool = True):
    y = d.astype(self.dtype)
    for i in range(1, self.depth + 1):
      y = nn.Dense(self.width, use_bias=False, dtype=self.dtype, name=f"fc{i}")(y)
      y = resnet.BatchNorm(
        use_running_average=not train, momentum=self.bn_momentum, dtype=self.dtype, name=f"bn{i}"
      )(y)
      y = nn.relu(y) if i < self.depth else y
    return y.astype(jnp.float32)


def term(ctx, c):
  """No loss term (CASSLE adds none). Metric ``cassle/condition_share``: in the first layer of
  head 0, ``[V, e] W = V W_V + e W_e``, the share of the descriptor's part in the norm of the
  pre-activation, ``|e W_e| / (|V W_V| + |e W_e|)``, averaged over the valid queries: 0 where
  the head ignores the descriptor."""
  kernel = jax.lax.stop_gradient(ctx.params["head0"]["fc1"]["kernel"])  # [F + width, hidden]
  f = jax.lax.stop_gradient(ctx.query["space_features"][:, 0])  # head 0's feature [B, F]
  e = jax.lax.stop_gradient(ctx.query["condition_embedding"])  # [B, width]
  norm = lambda x, w: jnp.linalg.norm(jnp.dot(x, w, precision=jax.lax.Precision.HIGHEST), axis=-1)
  from_f, from_e = norm(f, kernel[: -c.width]), norm(e, kernel[-c.width :])
  share = from_e / jnp.maximum(from_f + from_e, 1e-12)
  w = ctx.valid.astype(jnp.float32)
  share = jnp.sum(w * share) / jnp.maximum(jnp.sum(w), 1.0)
  return jnp.zeros((), jnp.float32), {f"{NAME}/condition_share": share}, ctx.batch_stats
