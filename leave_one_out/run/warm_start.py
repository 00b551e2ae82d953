"""A new run that starts from pretrained weights (``config.init_from``), not a random init.

``config.init_from.path`` is anything ``leave_one_out.load_pretrained`` reads: a workdir, one
checkpoint, an exported msgpack file or a PyTorch checkpoint's directory written by
``python -m leave_one_out.pretrained --import_torch``. ``parts`` says what is taken from it:
"backbone" (the ResNet and, for LooC++, its res5 stages; the heads keep their fresh init) or
"backbone_and_heads" (every variable: the same spaces and head sizes). BatchNorm statistics come
with their layers, and the key (EMA) encoder starts equal to the query encoder, as in MoCo. It
applies only when a run starts; a resumed run continues from its own checkpoint.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from absl import logging

from leave_one_out import pretrained
from leave_one_out.run import checkpoints


def apply(state, cfg):
  """``state`` (a fresh train state) with ``cfg.init_from``'s parts loaded over it; ``state``
  itself when ``cfg.init_from.path`` is "". ValueError when they do not fit the run's model."""
  path, parts = cfg.init_from.path, cfg.init_from.parts
  if not path:
    return state
  if parts == "backbone_and_heads":
    record = pretrained.imported(path)
    if record and not record["heads"]:
      raise ValueError(
        f"config.init_from.parts='backbone_and_heads', but {path} has no heads of its own "
        f"(its {record['format']} checkpoint had none this model can use, so the import drew "
        "them afresh): use config.init_from.parts='backbone'"
      )
  _, variables, _ = pretrained.load_pretrained(path)
  keep = lambda name: parts == "backbone_and_heads" or not name.startswith("head")
  loaded = {c: {k: v for k, v in tree.items() if keep(k)} for c, tree in variables.items()}
  current = {"params": state.params, "batch_stats": state.batch_stats}
  problems = _mismatches(
    {c: {k: v for k, v in current[c].items() if keep(k)} for c in current}, loaded
  )
  if problems:
    raise ValueError(
      f"config.init_from.path={path!r} does not fit this run's model (parts={parts!r}): "
      f"{len(problems)} arrays, e.g. " + "; ".join(problems[:6])
    )
  params = {**state.params, **loaded["params"]}
  batch_stats = {**state.batch_stats, **loaded["batch_stats"]}
  count = sum(x.size for x in jax.tree.leaves(loaded["params"]))
  logging.info("Initialised %s (%d parameters) from %s", parts, count, path)
  copy = lambda tree: jax.tree.map(jnp.copy, tree)  # own buffers: the step donates the state
  return state.replace(
    params=params,
    batch_stats=batch_stats,
    ema_params=copy(params),
    ema_batch_stats=copy(batch_stats),
  )


def _mismatches(want: dict, have: dict) -> list[str]:
  """Arrays of ``want`` missing from ``have``, unexpected in it, or of another shape."""
  shapes = lambda tree: {
    checkpoints.path_name(p): tuple(x.shape)
    for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
  }
  want, have = shapes(want), shapes(have)
  problems = [f"missing {k} {want[k]}" for k in sorted(set(want) - set(have))]
  problems += [f"unexpected {k} {have[k]}" for k in sorted(set(have) - set(want))]
  return problems + [
    f"{k}: pretrained {have[k]}, run {want[k]}"
    for k in sorted(set(want) & set(have))
    if want[k] != have[k]
  ]
