"""The LooC loss: docs/method.md's formula, its variants, and the sharded version."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import losses

TAU = 0.2


@functools.partial(jax.jit, static_argnums=1)
def _normalised(rng, shape):
  x = jax.random.normal(rng, shape)
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


# The reference loss, jitted: one program per shape and options instead of its ops one by one.
_looc_loss = jax.jit(
  losses.looc_loss, static_argnames=("temperature", "z0_positives", "space_reduction")
)


def _embeddings(seed=0, batch=8, n=2, dim=16):
  rq, rk = jax.random.split(jax.random.PRNGKey(seed))
  return _normalised(rq, (batch, n + 1, dim)), _normalised(rk, (n + 1, batch, n + 1, dim))


def _reference(q, k, queue=None, z0="all"):
  """docs/method.md's equations written out with explicit loops (float64 numpy)."""
  q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
  num_keys, batch, spaces, _ = k.shape
  total = np.zeros(spaces)
  for b in range(batch):
    for h in range(spaces):
      cands, pos = [], []
      for l in range(num_keys):
        for j in range(batch):
          s = q[b, h] @ k[l, j, h] / TAU
          if j == b and h == 0 and z0 == "k0" and l > 0:
            continue  # the variant drops the other own views from space 0
          cands.append(s)
          if j == b and (l == h or (h == 0 and z0 == "all")):
            pos.append(s)
      if queue is not None:
        cands += list(np.asarray(queue[h], np.float64) @ q[b, h] / TAU)
      lse = np.log(np.sum(np.exp(cands)))
      total[h] += np.mean([lse - p for p in pos])
  per_space = total / batch
  return per_space.mean(), per_space


@pytest.mark.parametrize("z0", ["all", "k0"])
def test_matches_method_md(z0):
  q, k = _embeddings()
  loss, metrics = _looc_loss(q, k, temperature=TAU, z0_positives=z0)
  want, want_per_space = _reference(q, k, z0=z0)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(metrics["loss_per_space"], want_per_space, rtol=1e-5)


def test_queue_adds_negatives():
  q, k = _embeddings(seed=1)
  queue = _normalised(jax.random.PRNGKey(9), (3, 5, 16))
  loss, _ = _looc_loss(q, k, temperature=TAU, queue=queue)
  want, _ = _reference(q, k, queue=queue)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  plain, _ = _looc_loss(q, k, temperature=TAU)
  assert loss > plain


def test_sum_reduction():
  q, k = _embeddings(seed=2)
  mean, m = _looc_loss(q, k, temperature=TAU)
  total, _ = _looc_loss(q, k, temperature=TAU, space_reduction="sum")
  np.testing.assert_allclose(total, m["loss_per_space"].sum(), rtol=1e-6)
  np.testing.assert_allclose(mean * 3, total, rtol=1e-6)


def test_n0_is_infonce():
  q, k = _embeddings(seed=3, n=0)
  loss, _ = _looc_loss(q, k, temperature=TAU)
  logits = q[:, 0] @ k[0, :, 0].T / TAU
  infonce = -jnp.mean(jax.nn.log_softmax(logits, axis=-1)[jnp.arange(8), jnp.arange(8)])
  np.testing.assert_allclose(loss, infonce, rtol=1e-6)


@pytest.mark.parametrize("z0, n", [("all", 0), ("all", 1), ("k0", 1)])
def test_extra_keys_are_drawn_like_k0(z0, n):
  """K = n + 3 keys for n spaces (augment.extra_keys = 2): still METHOD.md's sums, the extra
  keys positives of space 0 only; with n = 0 and z0="all", InfoNCE with 3 positives per query."""
  q, k = _embeddings(seed=5, n=n)
  extra = _normalised(jax.random.PRNGKey(11), (2,) + k.shape[1:])
  k = jnp.concatenate([k, extra])
  loss, metrics = _looc_loss(q, k, temperature=TAU, z0_positives=z0)
  want, want_per_space = _reference(q, k, z0=z0)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(metrics["loss_per_space"], want_per_space, rtol=1e-5)
  if n == 0 and z0 == "all":
    logits = jnp.einsum("bd,kjd->bkj", q[:, 0], k[:, :, 0]).reshape(8, -1) / TAU
    own = jnp.arange(3)[:, None] * 8 + jnp.arange(8)[None, :]  # [3, 8] flat index of own keys
    lse = jax.nn.logsumexp(logits, axis=-1)
    manual = jnp.mean(lse - jnp.mean(logits[jnp.arange(8), own], axis=0))
    np.testing.assert_allclose(loss, manual, rtol=1e-6)


def test_perfect_embeddings_give_full_accuracy_and_low_loss():
  """Space i sees q and k_i identical and every other view far away: loss near 0, top-1 1."""
  batch, n, dim = 4, 2, 64
  eye = jnp.eye(dim)
  # Each (image, view) pair gets its own orthogonal direction; in space i, k_i equals q.
  q = jnp.stack(
    [jnp.stack([eye[b * 8 + (h if h else 0)] for h in range(n + 1)]) for b in range(batch)]
  )
  k = jnp.stack(
    [
      jnp.stack(
        [
          jnp.stack(
            [eye[b * 8 + (l if l == h else 7 - l)] if h else eye[b * 8] for h in range(n + 1)]
          )
          for b in range(batch)
        ]
      )
      for l in range(n + 1)
    ]
  )
  loss, metrics = _looc_loss(q, k, temperature=0.05)
  np.testing.assert_allclose(metrics["top1_per_space"], 1.0)
  np.testing.assert_allclose(metrics["own_top1_per_space"], 1.0)
  # Space 0 has n+1 positives sharing one softmax: its floor is log(n+1).
  np.testing.assert_allclose(metrics["loss_per_space"][0], np.log(n + 1), atol=1e-3)
  assert float(metrics["loss_per_space"][1:].max()) < 1e-3


def test_space_i_negatives_include_own_other_views():
  """If k_0 of the own image equals q in space 1, space 1's loss rises (it is a negative)."""
  q, k = _embeddings(seed=4)
  base, m0 = _looc_loss(q, k, temperature=TAU)
  k_bad = k.at[0, :, 1].set(q[:, 1])
  _, m1 = _looc_loss(q, k_bad, temperature=TAU)
  assert m1["loss_per_space"][1] > m0["loss_per_space"][1] + 0.5
  # k_0 now beats k_1 among the own keys in space 1 for every query.
  assert float(m1["own_top1_per_space"][1]) == 0.0 and float(m1["own_top1_per_space"][0]) == 1.0
  # In space 0 every own key is a positive: pulling k_1 onto q lowers that space's loss.
  _, m2 = _looc_loss(q, k.at[1, :, 0].set(q[:, 0]), temperature=TAU)
  assert m2["loss_per_space"][0] < m0["loss_per_space"][0] - 0.2


@pytest.mark.parametrize("use_queue", [False, True])
def test_sharded_matches_reference_on_8_devices(use_queue):
  devices = jax.devices()
  assert len(devices) == 8, "conftest sets 8 fake CPU devices"
  mesh = Mesh(np.array(devices), ("data",))
  q, k = _embeddings(seed=5, batch=16, n=3)
  queue = _normalised(jax.random.PRNGKey(2), (4, 6, 16)) if use_queue else None
  want, want_m = _looc_loss(q, k, temperature=TAU, queue=queue)
  q_s = jax.device_put(q, NamedSharding(mesh, P("data")))
  k_s = jax.device_put(k, NamedSharding(mesh, P(None, "data")))
  fn = jax.jit(
    lambda q, k, queue: losses.sharded_looc_loss(
      q, k, mesh=mesh, axis="data", temperature=TAU, queue=queue
    )
  )
  got, got_m = fn(q_s, k_s, queue)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got_m["loss_per_space"], want_m["loss_per_space"], rtol=1e-5)
  np.testing.assert_allclose(got_m["top1_per_space"], want_m["top1_per_space"])
  np.testing.assert_allclose(got_m["own_top1_per_space"], want_m["own_top1_per_space"])
  # Gradients with respect to the queries agree too.
  g_want = jax.grad(lambda q: _looc_loss(q, k, temperature=TAU, queue=queue)[0])(q)
  g_got = jax.jit(
    jax.grad(
      lambda q: losses.sharded_looc_loss(
        q, k_s, mesh=mesh, axis="data", temperature=TAU, queue=queue
      )[0]
    )
  )(q_s)
  np.testing.assert_allclose(g_got, g_want, rtol=1e-4, atol=1e-7)


def test_bad_arguments_are_named():
  q, k = _embeddings()
  with pytest.raises(ValueError, match="z0_positives"):
    losses.looc_loss(q, k, temperature=TAU, z0_positives="k1")
  with pytest.raises(ValueError, match="space_reduction"):
    losses.looc_loss(q, k, temperature=TAU, space_reduction="max")
  with pytest.raises(ValueError, match="key views but 3 spaces"):
    losses.looc_loss(q, k[:2], temperature=TAU)


def test_invalid_images_are_masked_out_as_if_absent():
  """An unreadable file's slot (valid=False) is neither a query nor a candidate: the loss, its
  metrics and the gradients of the other queries equal those of the batch without that image,
  in the reference and the sharded loss."""
  mesh = Mesh(np.array(jax.devices()), ("data",))
  q, k = _embeddings(seed=7, batch=16, n=2)
  valid = np.ones(16, bool)
  valid[[3, 10]] = False
  keep = np.flatnonzero(valid)
  want, want_m = _looc_loss(q[keep], k[:, keep], temperature=TAU)
  got, got_m = _looc_loss(q, k, temperature=TAU, valid=jnp.asarray(valid))
  sharded = jax.jit(
    lambda q, k, v: losses.sharded_looc_loss(q, k, mesh=mesh, axis="data", temperature=TAU, valid=v)
  )
  put = lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec))
  got_s, got_sm = sharded(put(q, P("data")), put(k, P(None, "data")), put(valid, P("data")))
  for loss, metrics in ((got, got_m), (got_s, got_sm)):
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    for name in ("loss_per_space", "top1_per_space", "own_top1_per_space"):
      np.testing.assert_allclose(metrics[name], want_m[name], rtol=1e-5)
  g_want = jax.grad(lambda x: _looc_loss(x, k[:, keep], temperature=TAU)[0])(q[keep])
  g_got = jax.grad(lambda x: _looc_loss(x, k, temperature=TAU, valid=jnp.asarray(valid))[0])(q)
  np.testing.assert_allclose(g_got[keep], g_want, rtol=1e-4, atol=1e-7)
  assert not np.asarray(g_got[~valid]).any()  # an empty slot gets no gradient
