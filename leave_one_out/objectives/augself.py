"""AugSelf (Lee et al., NeurIPS 2021): predict the difference of two views' augmentation parameters.

An MLP per parameter group reads the concatenated backbone features of q (online encoder, with
gradient) and k_0 (key encoder, no gradient), ``[f_q, f_k0]``, and regresses the difference of
their parameters, q minus k_0; as in AugSelf's code the pair is also presented the other way
round, ``[f_k0, f_q]`` against k_0 minus q, so the heads see 2B rows. The backbone gets the
gradient through f_q (both positions), as in AugSelf's MoCo trainer.

  loss += weight * sum over groups g of L_g

Groups (targets for view a against view b; ``leave_one_out.augment``'s encodings):

  crop      4  (cy_a - cy_b, s (cx_a - cx_b), h_a - h_b, w_a - w_b): box centre and size in
               fractions of the image; ``crop_mirror="first"`` (AugSelf's code): s = -1 if a is
               flipped, else 1 (both centres mirrored with a's flip); "own": each centre mirrored
               with its own view's flip
  color     4  color_factors(a) - color_factors(b): jitter factors centred and divided by their
               range's width, 0 where the jitter was not applied
  blur      1  sigma_a - sigma_b (0 where not applied)
  flip      1  a and b flipped alike, binary cross-entropy on a logit
  rotation  4  (k_a - k_b) mod 4, 4-way cross-entropy (AugSelf's "rot" on STL-10)

The regression groups use AugSelf's loss, ``mean((tanh(prediction) - target)^2)`` over the 2B
rows and the group's dimensions. Each head is AugSelf's ``load_mlp(2F, 512, d, num_layers=3)``:
Linear (no bias) - BatchNorm - ReLU, twice, then Linear with bias.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from leave_one_out import augment
from leave_one_out import fields
from leave_one_out import resnet

NAME = "augself"
GROUPS = {"crop": 4, "color": 4, "blur": 1, "flip": 1, "rotation": 4}  # group -> output size
REGRESSION = ("crop", "color", "blur")
CROP_MIRRORS = ("first", "own")


def default_config() -> ml_collections.ConfigDict:
  """``config.objectives.augself``: AugSelf's ImageNet-100 groups, off (weight 0)."""
  c = ml_collections.ConfigDict()
  c.weight = 0.0  # > 0 turns AugSelf on: loss += weight * (sum of the groups' losses); AugSelf's
  #                 ImageNet-100 recipe: 0.5 (for crop and for colour)
  c.groups = ("crop", "color")  # crop | color | blur | flip | rotation: one head each
  c.hidden = 512  # width of each head's two hidden layers (AugSelf: 512)
  c.crop_mirror = "first"  # first: both centres mirrored with the first view's flip (AugSelf's
  #                          code); own: each with its own view's flip
  return c


def validate(c: ml_collections.ConfigDict, cfg: ml_collections.ConfigDict) -> None:
  check = fields.Section(c, f"config.objectives.{NAME}")
  check.number("weight", 0.0)
  groups = c.groups
  check.check(
    isinstance(groups, (tuple, list)) and len(groups) > 0 and len(set(groups)) == len(groups),
    "groups",
    f"must be a non-empty tuple of distinct groups out of {tuple(GROUPS)}, got {groups!r}",
  )
  for group in groups:
    check.check(group in GROUPS, "groups", f"has unknown group {group!r}; known: {tuple(GROUPS)}")
    if active(c):  # every group is named after the augmentation it predicts
      check.check(
        cfg.augment[group].enabled,
        "groups",
        f"has {group!r} but config.augment.{group}.enabled is False (nothing to predict)",
      )
  check.integer("hidden", 1)
  check.one_of("crop_mirror", CROP_MIRRORS)


def active(c) -> bool:
  return c.weight > 0


def model_fields(c) -> dict:
  return {"augself_groups": ",".join(c.groups), "augself_hidden": int(c.hidden)}


class Heads(nn.Module):
  """One MLP per group: ``[..., 2F]`` pairs -> {group: float32 `[..., GROUPS[group]]`}."""

  groups: tuple[str, ...]
  hidden: int = 512
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = True):
    out = {}
    for group in self.groups:
      y = x.astype(self.dtype)
      for i in (1, 2):
        y = nn.Dense(self.hidden, use_bias=False, dtype=self.dtype, name=f"{group}_fc{i}")(y)
        y = resnet.BatchNorm(
          use_running_average=not train,
          momentum=self.bn_momentum,
          dtype=self.dtype,
          name=f"{group}_bn{i}",
        )(y)
        y = nn.relu(y)
      out[group] = nn.Dense(GROUPS[group], dtype=self.dtype, name=f"{group}_out")(y)
      out[group] = out[group].astype(jnp.float32)
    return out


def targets(a, b, augment_cfg, groups, crop_mirror: str = "first") -> dict[str, jax.Array]:
  """AugSelf's targets for view ``a`` against view ``b`` (parameter groups with leaves `[...]`).

  Returns {group: target}: float32 `[..., d]` for the regression groups and flip, int32 `[...]`
  for rotation (module docstring).
  """
  out = {}
  if "crop" in groups:
    box_a = augment.crop_center_size(a["crop"])
    box_b = augment.crop_center_size(b["crop"])
    flip_a, flip_b = a["flip"]["apply"], b["flip"]["apply"]
    mirror_b = flip_a if crop_mirror == "first" else flip_b
    cx_a = jnp.where(flip_a, 1 - box_a[..., 1], box_a[..., 1])
    cx_b = jnp.where(mirror_b, 1 - box_b[..., 1], box_b[..., 1])
    diff = box_a - box_b
    out["crop"] = jnp.stack([diff[..., 0], cx_a - cx_b, diff[..., 2], diff[..., 3]], axis=-1)
  if "color" in groups:
    out["color"] = augment.color_factors(a["color"], augment_cfg) - augment.color_factors(
      b["color"], augment_cfg
    )
  if "blur" in groups:
    out["blur"] = augment.blur_sigma(a["blur"]) - augment.blur_sigma(b["blur"])
  if "flip" in groups:
    same = a["flip"]["apply"] == b["flip"]["apply"]
    out["flip"] = same[..., None].astype(jnp.float32)
  if "rotation" in groups:
    out["rotation"] = ((a["rotation"]["k"] - b["rotation"]["k"]) % 4).astype(jnp.int32)
  return out


def group_losses(predictions, target, valid) -> dict[str, jax.Array]:
  """Each group's loss, and the accuracy of the classification groups (``<group>_top1``).

  ``predictions``, ``target``: {group: `[2, B, ...]`} (targets as ``targets`` gives them);
  ``valid``: bool `[B]`. Means over the valid images of both orderings (and a group's dims).
  """
  mean = lambda per_image: _masked_mean(per_image, valid)  # [2, B] -> scalar
  out = {}
  for group, p in predictions.items():
    t = target[group]
    if group in REGRESSION:
      out[group] = mean(jnp.mean((jnp.tanh(p) - t) ** 2, axis=-1))
    elif group == "flip":
      out[group] = mean(optax.sigmoid_binary_cross_entropy(p[..., 0], t[..., 0]))
      out["flip_top1"] = mean(((p[..., 0] > 0) == (t[..., 0] > 0.5)).astype(jnp.float32))
    else:  # rotation
      out[group] = mean(optax.softmax_cross_entropy_with_integer_labels(p, t))
      out["rotation_top1"] = mean((jnp.argmax(p, axis=-1) == t).astype(jnp.float32))
  return out


def _masked_mean(values, valid):
  """Mean of ``values`` `[..., B]` over the valid images (bool `[B]`) and the leading axes."""
  w = jnp.broadcast_to(valid, values.shape).astype(jnp.float32)
  return jnp.sum(w * values.astype(jnp.float32)) / jnp.maximum(jnp.sum(w), 1.0)


def term(ctx, c):
  """weight * sum of the groups' losses; metrics ``augself/loss`` (the unweighted sum) and
  ``augself/<group>`` (and ``augself/<group>_top1`` for flip and rotation)."""
  f_q = ctx.query["feature"]  # [B, F], with gradient
  f_k = jax.lax.stop_gradient(ctx.key_features[0])  # k_0, [B, F]
  pairs = jnp.stack([jnp.concatenate([f_q, f_k], -1), jnp.concatenate([f_k, f_q], -1)])
  predictions, updates = ctx.model.apply(
    {"params": ctx.params, "batch_stats": ctx.batch_stats},
    pairs,  # [2, B, 2F]
    True,
    method="augself_predict",
    mutable=["batch_stats"],
  )
  q, k = (jax.tree.map(lambda x, i=i: x[i], ctx.view_params) for i in (0, 1))
  groups = tuple(c.groups)
  target = jax.tree.map(
    lambda x, y: jnp.stack([x, y]),
    targets(q, k, ctx.cfg.augment, groups, c.crop_mirror),
    targets(k, q, ctx.cfg.augment, groups, c.crop_mirror),
  )
  found = group_losses(predictions, target, ctx.valid)
  loss = sum(found[g] for g in groups)
  metrics = {f"{NAME}/loss": loss, **{f"{NAME}/{k}": v for k, v in found.items()}}
  return c.weight * loss, metrics, updates["batch_stats"]
