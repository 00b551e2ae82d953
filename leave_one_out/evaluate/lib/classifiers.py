"""Probes on frozen features: linear, k-nearest-neighbour, few-shot (docs/method.md, "Evaluation").

Pure functions of arrays (numpy in, numpy or Python numbers out; jitted jax inside); no I/O.
Shapes: features `[N, F]` float, labels `[N]` int in [0, C).

* ``linear_probe``: softmax regression trained full-batch with Adam (optax) on normalised
  features; the L2 strength is chosen on a held-out part of the training set, then the
  classifier is retrained on all of it with that strength. Every candidate of the L2 grid trains
  in one vmapped call. Reports top-1/top-5 on the test set.
* ``knn_probe``: weighted kNN on cosine similarity (InstDisc / MoCo monitor): each of the k
  nearest training features votes for its class with weight exp(similarity / temperature).
* ``few_shot``: per trial, K examples per class are drawn from the training pool and a linear
  classifier is trained on them (Adam, lr 0.03, 250 iterations, docs/method.md), all trials in
  one vmapped call; the mean test accuracy over trials and its 95% confidence interval
  (``mean_ci95``: Student's t) are reported.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

NORMALIZATIONS = ("standardize", "l2", "none")


# ------------------------------------------------------------------------------------ helpers


def _check(x, y=None, name="features"):
  x = np.asarray(x, np.float32)
  if x.ndim != 2:
    raise ValueError(f"{name} must be [N, F], got shape {x.shape}")
  if y is not None:
    y = np.asarray(y)
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
      raise ValueError(f"labels for {name} must be int [{x.shape[0]}], got {y.dtype} {y.shape}")
    return x, y.astype(np.int32)
  return x


def fit_normalizer(x, mode: str = "standardize") -> dict:
  """Statistics of ``x`` `[N, F]` for ``normalize``.

  Modes: "standardize" (per-dimension zero mean, unit variance, from x), "l2" (each row to unit
  norm), "none".
  """
  if mode not in NORMALIZATIONS:
    raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {mode!r}")
  x = np.asarray(x, np.float32)
  if mode == "standardize":
    return {"mode": mode, "mean": x.mean(0), "scale": 1.0 / np.maximum(x.std(0), 1e-6)}
  return {"mode": mode}


def normalize(norm: dict, x) -> np.ndarray:
  """Applies ``fit_normalizer``'s statistics to ``x`` `[N, F]`."""
  x = np.asarray(x, np.float32)
  if norm["mode"] == "standardize":
    return (x - norm["mean"]) * norm["scale"]
  if norm["mode"] == "l2":
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  return x


def topk_accuracy(scores, labels, k: int = 1) -> float:
  """Fraction of rows of ``scores`` `[N, C]` whose label is among the k highest (k <= C)."""
  scores, labels = np.asarray(scores), np.asarray(labels)
  k = min(k, scores.shape[1])
  top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  return float(np.mean(np.any(top == labels[:, None], axis=1)))


def mean_ci95(values) -> tuple[float, float]:
  """Mean and 95% confidence half-width of the mean, ``t_{0.975, n-1} * s / sqrt(n)``.

  ``s`` is the sample standard deviation (ddof=1); the half-width is NaN for a single value.
  """
  v = np.asarray(values, np.float64).ravel()
  if v.size == 0:
    raise ValueError("mean_ci95 needs at least one value")
  if v.size == 1:
    return float(v[0]), math.nan
  from scipy import stats  # local: only this needs scipy (installed with jax)

  t = stats.t.ppf(0.975, v.size - 1)
  return float(v.mean()), float(t * v.std(ddof=1) / math.sqrt(v.size))


# ------------------------------------------------------------------------------------ linear


def _fit(x, y, l2, lr, *, num_classes: int, steps: int):
  """Full-batch Adam on mean softmax cross-entropy + l2/2 * |W|^2. x [N, F], y [N] -> (W, b)."""
  params = (
    jnp.zeros((x.shape[1], num_classes), jnp.float32),
    jnp.zeros((num_classes,), jnp.float32),
  )
  tx = optax.adam(lr)

  def loss(p):
    w, b = p
    ce = optax.softmax_cross_entropy_with_integer_labels(x @ w + b, y).mean()
    return ce + 0.5 * l2 * jnp.sum(w * w)

  def step(carry, _):
    p, opt_state = carry
    updates, opt_state = tx.update(jax.grad(loss)(p), opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
  return params


# One L2 strength per row of the result (x, y shared), or one trial per row (x, y batched).
@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit_grid(x, y, l2s, lr, *, num_classes: int, steps: int):
  fit = functools.partial(_fit, num_classes=num_classes, steps=steps)
  return jax.vmap(fit, in_axes=(None, None, 0, None))(x, y, l2s, lr)


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit_trials(xs, ys, l2, lr, *, num_classes: int, steps: int):
  fit = functools.partial(_fit, num_classes=num_classes, steps=steps)
  return jax.vmap(fit, in_axes=(0, 0, None, None))(xs, ys, l2, lr)


def train_linear(x, y, num_classes: int, *, l2=0.0, steps: int = 300, lr: float = 0.05):
  """Trains softmax regression on ``x`` `[N, F]`, ``y`` `[N]`.

  ``l2`` is a number or a sequence of L candidates (trained together). Returns numpy
  ``(W [F, C], b [C])``, or ``(W [L, F, C], b [L, C])`` for a sequence.
  """
  x, y = _check(x, y)
  grid = np.atleast_1d(np.asarray(l2, np.float32))
  w, b = jax.device_get(
    _fit_grid(x, y, grid, jnp.float32(lr), num_classes=int(num_classes), steps=int(steps))
  )
  return (w, b) if np.ndim(l2) else (w[0], b[0])


def classify(classifier: dict, x) -> np.ndarray:
  """Logits `[N, C]` of a classifier from ``linear_probe`` (normalisation included)."""
  x = normalize(classifier["norm"], _check(x))
  return x @ classifier["w"] + classifier["b"]


def linear_probe(
  train_x,
  train_y,
  test_x,
  test_y,
  num_classes: int,
  *,
  l2_grid=(0.0, 1e-4, 1e-3, 1e-2, 1e-1),
  val_fraction: float = 0.2,
  steps: int = 300,
  lr: float = 0.05,
  normalize_mode: str = "standardize",
  seed: int = 0,
  groups=None,
) -> dict:
  """Linear probe with the L2 strength chosen on held-out training examples.

  A random ``val_fraction`` of the training set is held out; one classifier per value of
  ``l2_grid`` trains on the rest; the value with the best held-out top-1 (ties: the larger L2)
  is retrained on the whole training set and evaluated on the test set. Features are
  normalised with statistics of the examples each classifier trains on.

  ``groups`` (int `[N]`, optional): examples that must fall on the same side of the held-out
  split, e.g. the source image of each rotated copy; a ``val_fraction`` of the groups is then
  held out, so no image is both fitted and used to choose L2.

  Returns:
    dict with top1, top5 (test; top-5 is 1.0 when C <= 5), l2 (chosen), val_top1 (list, one
    per grid value) and classifier (``{"norm", "w", "b"}`` for ``classify``).
  """
  train_x, train_y = _check(train_x, train_y, "train features")
  test_x, test_y = _check(test_x, test_y, "test features")
  grid = tuple(float(v) for v in l2_grid)
  if not grid or min(grid) < 0:
    raise ValueError(f"l2_grid must be non-empty and >= 0, got {l2_grid!r}")
  if not 0 <= val_fraction < 1:
    raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
  n = train_x.shape[0]
  group = np.arange(n) if groups is None else np.asarray(groups)
  if group.shape != (n,):
    raise ValueError(f"groups must be [{n}] (one per training example), got {group.shape}")
  ids, group_index = np.unique(group, return_inverse=True)
  n_val = int(round(len(ids) * val_fraction))
  val_top1 = []
  best = grid[0]
  if len(grid) > 1 and 0 < n_val < len(ids):
    position = np.argsort(np.random.default_rng(seed).permutation(len(ids)))[group_index]
    order = np.lexsort((np.arange(n), position))  # examples by their group's random position
    held_out = int(np.sum(position < n_val))
    val, fit = order[:held_out], order[held_out:]
    norm = fit_normalizer(train_x[fit], normalize_mode)
    w, b = train_linear(
      normalize(norm, train_x[fit]), train_y[fit], num_classes, l2=grid, steps=steps, lr=lr
    )
    xv = normalize(norm, train_x[val])
    val_top1 = [topk_accuracy(xv @ w[i] + b[i], train_y[val]) for i in range(len(grid))]
    best = max(zip(val_top1, grid))[1]  # ties -> the larger l2
  norm = fit_normalizer(train_x, normalize_mode)
  w, b = train_linear(normalize(norm, train_x), train_y, num_classes, l2=best, steps=steps, lr=lr)
  classifier = {"norm": norm, "w": w, "b": b}
  logits = classify(classifier, test_x)
  return {
    "top1": topk_accuracy(logits, test_y, 1),
    "top5": topk_accuracy(logits, test_y, 5),
    "l2": best,
    "l2_grid": list(grid),
    "val_top1": val_top1,
    "classifier": classifier,
  }


# ------------------------------------------------------------------------------------ kNN


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _knn_chunk(bank, bank_y, queries, temperature, *, k: int, num_classes: int):
  sims = queries @ bank.T  # [Q, N]
  top, idx = jax.lax.top_k(sims, k)  # [Q, k]
  votes = jax.nn.one_hot(bank_y[idx], num_classes) * jnp.exp(top / temperature)[..., None]
  return votes.sum(axis=1)  # [Q, C]


def knn_scores(
  bank_x,
  bank_y,
  query_x,
  num_classes: int,
  *,
  k: int = 20,
  temperature: float = 0.07,
  chunk: int = 512,
) -> np.ndarray:
  """Class scores `[Q, C]` of weighted cosine kNN: sum over the k most similar bank entries
  of exp(cos / temperature), per class. ``bank_x`` `[N, F]`, ``query_x`` `[Q, F]`."""
  bank_x, bank_y = _check(bank_x, bank_y, "bank features")
  query_x = _check(query_x, name="query features")
  if k < 1 or temperature <= 0:
    raise ValueError(
      f"k must be >= 1 and temperature > 0, got k={k!r}, temperature={temperature!r}"
    )
  unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
  bank, queries = unit(bank_x), unit(query_x)
  k = min(int(k), bank.shape[0])
  q = queries.shape[0]
  size = min(chunk, q)
  out = []
  for start in range(0, q, size):
    part = queries[start : start + size]
    valid = part.shape[0]
    part = np.pad(part, ((0, size - valid), (0, 0)))
    out.append(
      np.asarray(
        _knn_chunk(bank, bank_y, part, jnp.float32(temperature), k=k, num_classes=int(num_classes))
      )[:valid]
    )
  return np.concatenate(out)


def knn_probe(
  train_x, train_y, test_x, test_y, num_classes: int, *, k: int = 20, temperature: float = 0.07
) -> dict:
  """kNN top-1 / top-5 on the test set with the training set as the bank."""
  scores = knn_scores(train_x, train_y, test_x, num_classes, k=k, temperature=temperature)
  test_y = np.asarray(test_y)
  return {"top1": topk_accuracy(scores, test_y, 1), "top5": topk_accuracy(scores, test_y, 5)}


# ------------------------------------------------------------------------------------ few-shot


def sample_few_shot(labels, num_classes: int, shots: int, trials: int, seed: int = 0):
  """Indices `[trials, C * shots]`: per trial, ``shots`` distinct examples of every class."""
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  pools = [np.flatnonzero(labels == c) for c in range(num_classes)]
  short = {c: len(p) for c, p in enumerate(pools) if len(p) < shots}
  if short:
    raise ValueError(
      f"{shots}-shot needs {shots} examples of every class; these classes have "
      f"fewer (class: count): {short}"
    )
  return np.stack(
    [np.concatenate([rng.choice(p, shots, replace=False) for p in pools]) for _ in range(trials)]
  )


def few_shot(
  train_x,
  train_y,
  test_x,
  test_y,
  num_classes: int,
  *,
  shots: int,
  trials: int = 10,
  steps: int = 250,
  lr: float = 0.03,
  l2: float = 0.0,
  normalize_mode: str = "l2",
  seed: int = 0,
) -> dict:
  """K-shot linear classification, ``trials`` times (all trials train in one vmapped call).

  Per trial: ``shots`` examples per class drawn from the training pool, a linear classifier
  trained on them (Adam, ``lr``, ``steps`` full-batch iterations), accuracy on the whole test
  set. With ``normalize_mode="standardize"`` the statistics come from each trial's examples.

  Returns:
    dict with mean, ci95 (95% half-width, ``mean_ci95``), accuracies (one per trial), shots,
    trials.
  """
  train_x, train_y = _check(train_x, train_y, "train features")
  test_x, test_y = _check(test_x, test_y, "test features")
  if shots < 1 or trials < 1:
    raise ValueError(f"shots and trials must be >= 1, got shots={shots!r}, trials={trials!r}")
  idx = sample_few_shot(train_y, num_classes, shots, trials, seed)
  norms = [fit_normalizer(train_x[i], normalize_mode) for i in idx]
  xs = np.stack([normalize(nm, train_x[i]) for nm, i in zip(norms, idx)])
  ws, bs = jax.device_get(
    _fit_trials(
      xs,
      train_y[idx],
      jnp.float32(l2),
      jnp.float32(lr),
      num_classes=int(num_classes),
      steps=int(steps),
    )
  )
  accs = [topk_accuracy(normalize(nm, test_x) @ w + b, test_y) for nm, w, b in zip(norms, ws, bs)]
  mean, ci = mean_ci95(accs)
  return {"mean": mean, "ci95": ci, "accuracies": accs, "shots": int(shots), "trials": int(trials)}
