"""Auxiliary objectives of the one train step, beside the contrastive loss: AugSelf, E-SSL, CASSLE.

The folder's rule: one module per objective and one line in ``OBJECTIVES``. A module owns its
config section ``config.objectives.<name>`` (off by default), the encodings of the augmentation
parameters it reads, its heads (flax modules that ``models.LooCModel`` builds from the fields
``model_fields`` returns) and its term of the loss. docs/objectives.md states each method, its
parameterisation and where it differs from its paper's code. A module has

  default_config()            its section, a comment per field
  validate(c, cfg)            ValueError naming ``config.objectives.<name>.<field>``
  active(c) -> bool           whether a run uses it (a weight > 0, or ``enabled``)
  model_fields(c) -> dict     ``models.LooCModel`` fields of its heads (only asked when active)
  term(ctx, c)                -> (its weighted loss term, metrics, batch_stats), called by the
                              train step inside the differentiated function, after the
                              contrastive loss, with a ``Context``; metrics are scalars named
                              "<name>/<what>" ("augself/crop", "essl/top1"), "<name>/loss" the
                              unweighted loss where there is one

and, if it changes the input of the projection heads, ``condition(images, view_params, c, cfg)
-> [V, B, C]`` (CASSLE: each view's augmentation descriptor; one such module). The progress
line and the metrics files show every metric under its name (``progress``).
"""

from __future__ import annotations

from typing import Any
from typing import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from leave_one_out.objectives import augself
from leave_one_out.objectives import cassle
from leave_one_out.objectives import essl

OBJECTIVES = {"augself": augself, "essl": essl, "cassle": cassle}  # name -> module, in step order


def default_config() -> ml_collections.ConfigDict:
  """``config.objectives``: one section per objective, every one off."""
  c = ml_collections.ConfigDict()
  for name, module in OBJECTIVES.items():
    c[name] = module.default_config()
  return c


def validate(c: ml_collections.ConfigDict, cfg: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first invalid field of ``config.objectives``."""
  for name, module in OBJECTIVES.items():
    module.validate(c[name], cfg)


def active(cfg) -> list[str]:
  """The objectives a run uses, in step order."""
  return [name for name, module in OBJECTIVES.items() if module.active(cfg.objectives[name])]


def model_fields(cfg) -> dict:
  """``models.LooCModel`` fields of the heads of every active objective ({} for none)."""
  out = {}
  for name in active(cfg):
    out.update(OBJECTIVES[name].model_fields(cfg.objectives[name]))
  return out


def condition(cfg, images, view_params) -> jax.Array | None:
  """The heads' per-view input `[V, B, C]` of the active conditioning objective, or None."""
  for name in active(cfg):
    module = OBJECTIVES[name]
    if hasattr(module, "condition"):
      return module.condition(images, view_params, cfg.objectives[name], cfg.augment)
  return None


class Context(NamedTuple):
  """What the train step hands each objective's ``term``, inside the differentiated function."""

  model: Any  # models.LooCModel
  params: Any  # the online params: the argument being differentiated
  batch_stats: Any  # after the query's forward pass (and the terms before this one)
  cfg: ml_collections.ConfigDict  # the whole config
  images: jax.Array  # uint8 [B, H0, W0, 3]: the batch, sharded
  aspect: jax.Array  # float32 [B]: each original image's width / height
  valid: jax.Array  # bool [B]: False for an unreadable file's empty slot
  view_params: dict  # augmentation parameters of every view, leaves [V, B, ...]: q, k_0, k_1..
  query: dict  # the online model's outputs for q ("feature" [B, F], with gradient)
  key_features: jax.Array  # [K, B, F]: the key encoder's features of k_0, k_1.. (no gradient)
  rng: jax.Array  # the step's key; an objective folds in its own stream number
  query_bn: dict  # ``model.apply`` BatchNorm-group arguments of an online forward pass
  shard: Callable  # (array, PartitionSpec) -> the array with that sharding on the mesh


def terms(ctx: Context) -> tuple[jax.Array, dict, Any]:
  """(sum of the active objectives' weighted terms, their metrics, batch_stats)."""
  total, metrics, batch_stats = jnp.zeros((), jnp.float32), {}, ctx.batch_stats
  for name in active(ctx.cfg):
    term, found, batch_stats = OBJECTIVES[name].term(
      ctx._replace(batch_stats=batch_stats), ctx.cfg.objectives[name]
    )
    total, metrics = total + term, {**metrics, **found}
  return total, metrics, batch_stats


def progress(scalars: dict) -> list[str]:
  """Parts of the progress line: ``augself 0.070 (color 0.061, crop 0.009)``, ``essl 0.008/100%``,
  ``cassle condition_share 0.281``; one per objective with metrics in ``scalars``."""
  parts = []
  for name in OBJECTIVES:
    found = {k.split("/", 1)[1]: v for k, v in scalars.items() if k.startswith(name + "/")}
    if not found:
      continue
    head = name
    if "loss" in found:
      head += f" {found.pop('loss'):.3f}"
    if "top1" in found:
      head += f"{'/' if ' ' in head else ' '}{100 * found.pop('top1'):.0f}%"
    rest = ", ".join(f"{k} {v:.3f}" for k, v in found.items())
    parts.append(f"{head} ({rest})" if rest and " " in head else f"{head} {rest}".rstrip())
  return parts
