"""E-SSL (Dangovski et al., ICLR 2022): predict the four-fold rotation of an extra small view.

Every image gets one more view, rendered inside the train step from the batch's images: a
small random-resized crop (``image_size``, area ``crop_scale``; E-SSL on ImageNet: 96 px, 0.05
to 0.14, beside 224-px views), with the run's flip, colour jitter and grayscale and E-SSL's blur
(probability ``blur_prob``, sigma in the small view's own pixels), never rotated by the
augmentation. All four rotations of it (``jnp.rot90``, k = 0..3 counter-clockwise, E-SSL's
``rotate_images``) go through the online backbone in a forward pass of their own, in train
mode (BatchNorm statistics of these 4B images, whose running averages move after the query's,
as E-SSL's second forward call does), and a head on the backbone feature classifies k:

  loss += weight * mean cross-entropy over the 4B rotated images

The head is E-SimCLR's ``rotation_projector``: Linear(F, F) - LayerNorm - ReLU - Linear(F, F) -
LayerNorm - ReLU - Linear(F, bottleneck) - LayerNorm - Linear(bottleneck, 4), biases
throughout. Cost per image: 4 forward and backward passes of a view with (image_size / S)^2 of
the query's pixels (0.73 of a query pass at 96 / 224).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import PartitionSpec as P

from leave_one_out import augment
from leave_one_out import fields
from leave_one_out import render
from leave_one_out.sharding import DATA_AXIS

NAME = "essl"
ROTATIONS = 4
STREAM = 2  # fold_in(the step's key, STREAM): the rotated views' key (the shuffle-BN's is 1)


def default_config() -> ml_collections.ConfigDict:
  """``config.objectives.essl``: E-SSL's ImageNet rotation view and head, off (weight 0)."""
  c = ml_collections.ConfigDict()
  c.weight = 0.0  # > 0 turns E-SSL on: loss += weight * rotation cross-entropy (E-SimCLR: 0.4)
  c.image_size = 96  # side of the view that is rotated (E-SSL ImageNet: 96 beside 224-px views;
  #                    CIFAR-10: 16 beside 32)
  c.crop_scale = (0.05, 0.14)  # its crop's area fraction (E-SSL ImageNet; CIFAR-10: 0.2-1.0)
  c.blur_prob = 0.1  # its blur probability (E-SSL), sigma config.augment.blur.sigma in its own
  #                    pixels; flip, colour and grayscale: config.augment's
  c.bottleneck = 128  # the head's last hidden width (E-SimCLR: 128; E-SimSiam, E-BT: 256)
  return c


def validate(c: ml_collections.ConfigDict, cfg: ml_collections.ConfigDict) -> None:
  del cfg
  check = fields.Section(c, f"config.objectives.{NAME}")
  check.number("weight", 0.0)
  check.integer("image_size", 8)
  check.number_range("crop_scale", 0.0, 1.0, low_open=True)
  check.probability("blur_prob")
  check.integer("bottleneck", 1)


def active(c) -> bool:
  return c.weight > 0


def model_fields(c) -> dict:
  return {"rotation_bottleneck": int(c.bottleneck)}


class Head(nn.Module):
  """E-SimCLR's rotation head: features `[N, F]` -> float32 logits `[N, 4]`."""

  bottleneck: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    widths = (x.shape[-1], x.shape[-1], self.bottleneck)
    y = x.astype(self.dtype)
    for i, width in enumerate(widths, start=1):
      y = nn.Dense(width, dtype=self.dtype, name=f"fc{i}")(y)
      y = nn.LayerNorm(dtype=self.dtype, name=f"ln{i}")(y)
      y = nn.relu(y) if i < len(widths) else y
    return nn.Dense(ROTATIONS, dtype=self.dtype, name="out")(y).astype(jnp.float32)


def view_config(c, augment_cfg) -> ml_collections.ConfigDict:
  """The augment config of the view that is rotated: ``augment_cfg`` with E-SSL's size, crop
  area (always cropped) and blur probability, no rotation and no spaces."""
  v = augment_cfg.copy_and_resolve_references()
  v.image_size = c.image_size
  v.spaces = ()
  v.extra_keys = 0
  v.crop.enabled = True
  v.crop.scale = tuple(c.crop_scale)
  v.blur.prob = c.blur_prob
  v.blur.sigma_reference_size = 0  # sigma in the small view's pixels, as E-SSL's PIL blur
  v.rotation.enabled = False
  return v


def rotated_views(rng, images, aspect, c, augment_cfg) -> tuple[jax.Array, jax.Array]:
  """One small view per image in its four rotations, batch-major.

  Returns (float32 `[B * 4, s, s, 3]`: image b's rotation k at row 4 b + k; labels int32
  `[B * 4]`: k).
  """
  b = images.shape[0]
  v = view_config(c, augment_cfg)
  x = render.render(images, augment.sample_params(rng, b, v, aspect), v)  # [B, s, s, 3]
  x = jnp.stack([jnp.rot90(x, k, axes=(1, 2)) for k in range(ROTATIONS)], axis=1)
  labels = jnp.tile(jnp.arange(ROTATIONS, dtype=jnp.int32), b)
  return x.reshape((b * ROTATIONS,) + x.shape[2:]), labels


def term(ctx, c):
  """weight * the rotation cross-entropy; metrics ``essl/loss`` (unweighted), ``essl/top1``."""
  x, labels = rotated_views(
    jax.random.fold_in(ctx.rng, STREAM), ctx.images, ctx.aspect, c, ctx.cfg.augment
  )
  x = ctx.shard(x, P(DATA_AXIS))
  out, updates = ctx.model.apply(
    {"params": ctx.params, "batch_stats": ctx.batch_stats},
    x,
    train=True,
    heads=False,
    mutable=["batch_stats"],
    **ctx.query_bn,
  )
  logits = ctx.model.apply({"params": ctx.params}, out["feature"], method="rotation_logits")
  w = jnp.repeat(ctx.valid, ROTATIONS).astype(jnp.float32)  # [B * 4]
  count = jnp.maximum(jnp.sum(w), 1.0)
  loss = jnp.sum(w * optax.softmax_cross_entropy_with_integer_labels(logits, labels)) / count
  top1 = jnp.sum(w * (jnp.argmax(logits, axis=-1) == labels)) / count
  return c.weight * loss, {f"{NAME}/loss": loss, f"{NAME}/top1": top1}, updates["batch_stats"]
