"""The LooC loss (docs/method.md, "Positives and negatives in each space").

Notation: n augmentations have a space of their own, H = n + 1 embedding spaces (space 0 is
invariant to everything, space i is sensitive to augmentation i), K = n + 1 key views per image
(k_0 with every augmentation fresh, k_i sharing augmentation i with the query). Keys beyond
k_n (K > H, ``augment.extra_keys``) are drawn like k_0: positives in space 0 only.

For every space h and every query, the candidates are the K keys of every image in the global
batch (plus the space's queue). The softmax denominator runs over all of them; the positives are

  * space 0: all K keys of the query's own image (the loss averages their K log-probabilities),
    or only k_0 with ``z0_positives="k0"`` (then the other own keys leave the denominator);
  * space i: only k_i of the query's own image; the other own keys differ from the query in
    augmentation i and stay in the denominator as negatives.

    L_h   = mean over positives p of [ logsumexp(candidates) - s(q_h, p) ],  s(a, b) = a.b / tau
    L     = 1/H * sum_h L_h   (or the sum with ``space_reduction="sum"``), averaged over the batch.

With n = 0 this is exactly InfoNCE (MoCo). ``looc_loss`` is the reference over the whole batch;
``sharded_looc_loss`` runs the same code on each device's queries against keys all-gathered
across the mesh, so no device builds the replicated ``B x K*B`` logits matrix.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import PartitionSpec as P

from leave_one_out import fields

Z0_POSITIVES = ("all", "k0")
SPACE_REDUCTIONS = ("mean", "sum")


def default_config() -> ml_collections.ConfigDict:
  """The loss section (``config.loss``): docs/method.md's loss with a MoCo queue per space."""
  c = ml_collections.ConfigDict()
  c.temperature = 0.2  # tau of s(a, b) = a.b / tau
  c.z0_positives = "all"  # all (every own key is a positive in Z_0, docs/method.md) | k0 (only k_0,
  #                         as the public re-implementations)
  c.space_reduction = "mean"  # mean (docs/method.md) | sum: how the H per-space losses combine
  c.queue_size = 16_384  # per-space MoCo queue of extra negatives (the paper's); 0 = in-batch
  #                        negatives only (MoCo v3 style); a multiple of train.batch_size
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first invalid field of the loss section (the queue size
  against the batch is checked with the train section, in ``leave_one_out.config``)."""
  check = fields.Section(c, "config.loss")
  check.number("temperature", 0.0, low_open=True)
  check.one_of("z0_positives", Z0_POSITIVES)
  check.one_of("space_reduction", SPACE_REDUCTIONS)
  check.integer("queue_size", 0)


def _per_query_losses(q, k, offset, *, temperature, queue, z0_positives, valid=None):
  """Loss and top-1 hit of each local query in each space.

  Args:
    q: `[b, H, D]` local queries, L2-normalised.
    k: `[K, B, H, D]` keys of the whole global batch, L2-normalised (K >= H; keys from H on
      are drawn like k_0).
    offset: global batch index of ``q[0]``.
    temperature: tau.
    queue: `[H, Q, D]` extra negatives per space, or None.
    z0_positives: "all" or "k0".
    valid: bool `[B]` over the global batch, or None (all valid): the keys of an invalid image
      (an unreadable file's empty slot) are no candidates of any query.

  Returns:
    (losses `[b, H]`, hits `[b, H, 2]`): top-1 over all candidates and own-view top-1.
  """
  num_keys, batch, num_spaces, _ = k.shape
  if num_keys < num_spaces:
    raise ValueError(
      f"k has {num_keys} key views but {num_spaces} spaces; LooC needs at least "
      "one key per space (n + 1)"
    )
  b = q.shape[0]
  q = q.astype(jnp.float32)
  k = k.astype(jnp.float32)
  # [b, H, K, B]: query of each local image against every key of every image, per space.
  logits = jnp.einsum("bhd,kBhd->bhkB", q, k) / temperature
  own = offset + jnp.arange(b)  # global index of each query's own image
  own_mask = jax.nn.one_hot(own, batch, dtype=bool)[:, None, None, :]  # [b, 1, 1, B]
  views = jnp.arange(num_keys)
  spaces = jnp.arange(num_spaces)
  # positive[h, l]: key view l is a positive in space h.
  positive = views[None, :] == spaces[:, None]
  if z0_positives == "all":
    positive = positive.at[0].set(True)
  elif z0_positives != "k0":
    raise ValueError(f"z0_positives must be one of {Z0_POSITIVES}, got {z0_positives!r}")
  pos_mask = own_mask & positive[None, :, :, None]  # [b, H, K, B]
  # With z0_positives="k0" the other views of the query's own image leave space 0 entirely.
  drop = jnp.zeros((num_spaces, num_keys), bool)
  if z0_positives == "k0":
    drop = drop.at[0, 1:].set(True)
  keep = ~(own_mask & drop[None, :, :, None])
  if valid is not None:
    keep = keep & valid[None, None, None, :]

  flat = jnp.where(keep, logits, -jnp.inf).reshape(b, num_spaces, num_keys * batch)
  if queue is not None:
    queue_logits = jnp.einsum("bhd,hqd->bhq", q, queue.astype(jnp.float32)) / temperature
    flat = jnp.concatenate([flat, queue_logits], axis=-1)
  lse = jax.nn.logsumexp(flat, axis=-1)  # [b, H]

  num_pos = pos_mask.sum(axis=(2, 3))
  pos_sum = jnp.where(pos_mask, logits, 0.0).sum(axis=(2, 3))
  losses = lse - pos_sum / num_pos

  # Top-1: the best candidate is one of the positives.
  best = jnp.max(flat, axis=-1)
  best_pos = jnp.max(jnp.where(pos_mask, logits, -jnp.inf), axis=(2, 3))
  hits = (best_pos >= best).astype(jnp.float32)
  # Own-view top-1 (space i >= 1): among the query's own n+1 keys, k_i scores highest, i.e. the
  # space tells the view sharing augmentation i from those that do not. Space 0: always 1.
  own = jnp.where(own_mask, logits, -jnp.inf).max(axis=-1)  # [b, H, K]
  own_hits = (jnp.argmax(own, axis=-1) == spaces[None, :]) | (spaces[None, :] == 0)
  return losses, jnp.stack([hits, own_hits.astype(jnp.float32)], axis=-1)


def _sums(losses, hits, weights):
  """Weighted sums over queries: (losses `[H]`, hits `[H, 2]`, weight scalar)."""
  w = weights.astype(jnp.float32)
  return (
    jnp.einsum("b,bh->h", w, jnp.where(weights[:, None], losses, 0.0)),
    jnp.einsum("b,bhc->hc", w, hits),
    w.sum(),
  )


def _reduce(loss_sum, hit_sum, count, space_reduction):
  """Mean over the valid queries per space -> (loss, metrics)."""
  count = jnp.maximum(count, 1.0)
  per_space = loss_sum / count
  if space_reduction == "mean":
    loss = per_space.mean()
  elif space_reduction == "sum":
    loss = per_space.sum()
  else:
    raise ValueError(f"space_reduction must be one of {SPACE_REDUCTIONS}, got {space_reduction!r}")
  accuracy = hit_sum / count
  return loss, {
    "loss_per_space": per_space,
    "top1_per_space": accuracy[:, 0],
    "own_top1_per_space": accuracy[:, 1],
  }


def looc_loss(
  q, k, *, temperature, queue=None, z0_positives="all", space_reduction="mean", valid=None
):
  """LooC loss over a whole batch (the reference implementation).

  Args:
    q: `[B, H, D]` the query's L2-normalised embedding in each space.
    k: `[K, B, H, D]` the keys' embeddings, K >= n + 1; ``k[0]`` is k_0, ``k[i]`` is k_i, and
      any further keys are drawn like k_0 (positives in space 0 only).
    temperature: tau (0.2 in the paper).
    queue: `[H, Q, D]` per-space negatives, or None.
    z0_positives: "all" (docs/method.md) or "k0" (public reproductions' variant).
    space_reduction: "mean" over spaces (docs/method.md) or "sum".
    valid: bool `[B]`, or None (all valid). An invalid image (an unreadable file's empty slot)
      is masked out: it is no query (the loss and metrics average the valid ones) and its keys
      are no candidates.

  Returns:
    (loss scalar, metrics) with metrics `[H]` each: "loss_per_space"; "top1_per_space", the
    positive beats every other candidate; "own_top1_per_space", among the query's own keys k_i
    scores highest (1 in space 0, where all own keys are positives).
  """
  weights = jnp.ones(q.shape[:1], bool) if valid is None else valid
  losses, hits = _per_query_losses(
    q, k, 0, temperature=temperature, queue=queue, z0_positives=z0_positives, valid=valid
  )
  return _reduce(*_sums(losses, hits, weights), space_reduction)


def sharded_looc_loss(
  q,
  k,
  *,
  mesh,
  axis,
  temperature,
  queue=None,
  z0_positives="all",
  space_reduction="mean",
  valid=None,
):
  """``looc_loss`` with the batch sharded over ``mesh`` axis ``axis``.

  Each device scores its own ``B / devices`` queries against the keys of the global batch,
  all-gathered over ``axis``; the sums of losses and accuracies (and the count of valid queries)
  are ``psum``-ed, so the result equals ``looc_loss``. ``q`` is `[B, H, D]` sharded on dim 0,
  ``k`` `[n+1, B, H, D]` sharded on dim 1, ``valid`` `[B]` sharded on dim 0, ``queue``
  replicated. Gradients flow to ``q`` (keys come from the momentum encoder and are not
  differentiated here).
  """
  queue_spec = None if queue is None else P()
  if valid is None:
    valid = jnp.ones(q.shape[:1], bool)

  @functools.partial(
    jax.shard_map,
    mesh=mesh,
    in_specs=(P(axis), P(None, axis), P(axis), queue_spec),
    out_specs=P(),
    check_vma=False,
  )
  def local(q_local, k_local, valid_local, queue_local):
    k_all = jax.lax.all_gather(jax.lax.stop_gradient(k_local), axis, axis=1, tiled=True)
    valid_all = jax.lax.all_gather(valid_local, axis, axis=0, tiled=True)
    offset = jax.lax.axis_index(axis) * q_local.shape[0]
    losses, hits = _per_query_losses(
      q_local,
      k_all,
      offset,
      temperature=temperature,
      queue=queue_local,
      z0_positives=z0_positives,
      valid=valid_all,
    )
    sums = jax.lax.psum(_sums(losses, hits, valid_local), axis)
    return _reduce(*sums, space_reduction)

  return local(q, k, valid, queue)
