"""MoCo's linear classification protocol, on device: SGD on linear layers over the frozen encoder.

He et al., "Momentum Contrast" (2020), ``main_lincls.py``, as MoCo v2 runs it: a linear layer on
the frozen backbone, SGD with momentum 0.9, no weight decay, batch 256, initial learning rate 30,
100 epochs with the rate x0.1 at epochs 60 and 80; each epoch every training image once, in a
fresh random order, as a random-resized crop (scale 0.08-1, aspect 3/4-4/3) with a random
horizontal flip; at test a centre crop. Here (``train_heads``):

- The crops are drawn and rendered on device from stored squares (``leave_one_out.augment``:
  explicit parameters, continuous boxes, bilinear), every epoch anew, and the encoder recomputes
  the features from them: nothing is cached. The encoder runs in inference mode (BatchNorm uses
  its running statistics and is never updated: "BN frozen").
- One linear layer per (feature kind, task) trains in the same step from the same forward pass
  (their gradients are independent), so every feature kind and every label costs one pass.
- The step is one ``jax.jit`` over the mesh: the batch is sharded along "data", the layers and
  the optimizer state are replicated; batches are put on the devices by a background thread,
  each host sending its share of the global batch. The last batch of an epoch is padded and the
  padding masked out of the loss (no image is dropped).
- Rotation (``rotate=True``): the training set is every image at 0/90/180/270 degrees (4N
  examples an epoch, each with its own crop), the target is the quarter turn k; the rotation is
  applied to the finished crop.
- Layers start at N(0, 0.01) weights and zero biases, as MoCo's.
Settings come from the probe section (``eval_config.probe``: ``epochs``, ``sgd_lr``, ...).
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import augment
from leave_one_out import extract
from leave_one_out import render
from leave_one_out.data.pipeline import prefetch
from leave_one_out.sharding import DATA_AXIS
from leave_one_out.sharding import make_mesh

ROTATION = "rotation"  # the task name of rotate=True


def augment_config(p, image_size: int, rotate: bool = False):
  """The training views' augment config: random-resized crop + flip (+ the given rotation)."""
  a = augment.default_config()
  a.image_size = int(image_size)
  a.spaces = ()
  a.crop.scale = tuple(p.crop_scale)
  a.crop.ratio = tuple(p.crop_ratio)
  a.flip.enabled = bool(p.flip)
  a.rotation.enabled = rotate  # k comes from the batch, not from sampling
  for name in ("blur", "color", "texture"):
    a[name].enabled = False
  return a


def settings(p) -> dict:
  """The protocol's settings as the results record them."""
  return {
    "name": "moco",
    "optimizer": "sgd",
    "epochs": int(p.epochs),
    "lr": float(p.sgd_lr),
    "momentum": float(p.momentum),
    "weight_decay": float(p.weight_decay),
    "batch_size": int(p.batch_size),
    "decay_epochs": list(decay_epochs(p)),
    "decay_factor": float(p.decay_factor),
    "crop_scale": list(p.crop_scale),
    "crop_ratio": list(p.crop_ratio),
    "flip": bool(p.flip),
    "train_views": "random-resized crop of a stored square, on device, every epoch",
    "test_views": "centre crop",
    "encoder": "frozen, inference mode (BN statistics fixed)",
  }


DECAY_AT = (0.6, 0.8)  # MoCo's decays, epochs 60 and 80 of 100, as fractions of the epochs


def decay_epochs(p) -> tuple[int, ...]:
  """The epochs the rate decays at: ``decay_epochs``, or () = MoCo's 60% and 80% of ``epochs``
  (60 and 80 of 100; 6 and 8 of a 10-epoch probe). Epochs >= ``epochs`` never come."""
  epochs = int(p.epochs)
  wanted = tuple(p.decay_epochs) or tuple(int(f * epochs) for f in DECAY_AT)
  return tuple(sorted({int(e) for e in wanted if 0 < e < epochs}))


def learning_rate(p, steps_per_epoch: int):
  """Step decays: ``sgd_lr``, times ``decay_factor`` from each epoch of ``decay_epochs(p)``."""
  return optax.piecewise_constant_schedule(
    float(p.sgd_lr),
    {e * steps_per_epoch: float(p.decay_factor) for e in decay_epochs(p)},
  )


def _init_heads(key, dims: dict[str, int], num_classes: dict[str, int]) -> dict:
  heads = {}
  for i, (kind, dim) in enumerate(sorted(dims.items())):
    heads[kind] = {}
    for j, (task, c) in enumerate(sorted(num_classes.items())):
      k = jax.random.fold_in(jax.random.fold_in(key, i), j)
      heads[kind][task] = {
        "w": 0.01 * jax.random.normal(k, (dim, c), jnp.float32),
        "b": jnp.zeros((c,), jnp.float32),
      }
  return heads


def _step_fn(model, aug_cfg, kinds, tasks, tx, mesh, rotate: bool):
  batch_sharded = NamedSharding(mesh, P(DATA_AXIS))

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(heads, opt_state, variables, batch, key):
    b = batch["image"].shape[0]
    params = augment.sample_params(key, b, aug_cfg)
    if rotate:
      params["rotation"] = {"k": batch["k"]}
    x = jax.lax.with_sharding_constraint(
      render.render(batch["image"], params, aug_cfg), batch_sharded
    )
    feats = jax.lax.stop_gradient(extract.batch_features(model, variables, x, kinds))
    mask = batch["valid"].astype(jnp.float32)

    def loss_fn(h):
      losses = {}
      for kind in kinds:
        for task in tasks:
          logits = feats[kind] @ h[kind][task]["w"] + h[kind][task]["b"]
          ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"][task])
          losses[f"{kind}/{task}"] = jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)
      return sum(losses.values()), losses

    grads, losses = jax.grad(loss_fn, has_aux=True)(heads)
    updates, opt_state = tx.update(grads, opt_state, heads)
    return optax.apply_updates(heads, updates), opt_state, losses

  return step


def _batches(images, targets, order, batch: int, rotate: bool):
  """This host's share of each global batch of ``order`` (example ids; the last one padded)."""
  n = len(images)
  lo = jax.process_index() * batch // jax.process_count()
  hi = (jax.process_index() + 1) * batch // jax.process_count()
  for start in range(0, len(order), batch):
    ids = order[start : start + batch]
    valid = np.arange(batch) < len(ids)
    ids = np.concatenate([ids, np.full(batch - len(ids), ids[0])])[lo:hi]
    image, k = ids % n, (ids // n).astype(np.int32)
    y = {ROTATION: k} if rotate else {t: v[image] for t, v in targets.items()}
    yield {"image": images[image], "k": k, "valid": valid[lo:hi], "y": y}


def train_heads(
  model,
  variables,
  images,
  targets: dict,
  num_classes: dict,
  kinds,
  p,
  *,
  image_size: int,
  rotate: bool = False,
  seed: int = 0,
  mesh=None,
) -> dict:
  """Trains linear layers with MoCo's protocol (module docstring).

  Args:
    model, variables: the frozen encoder (``pretrained.load_pretrained``).
    images: uint8 `[N, S0, S0, 3]`, the training images as stored squares (host memory).
    targets: task -> int `[N]` labels (ignored with ``rotate``: the task is ``ROTATION``).
    num_classes: task -> C.
    kinds: feature kinds, one layer each per task.
    p: the probe section (``epochs``, ``sgd_lr``, ``momentum``, ``weight_decay``,
      ``batch_size``, ``decay_epochs``, ``decay_factor``, ``crop_scale``, ``crop_ratio``,
      ``flip``).
    image_size: S, the model's input side (the crops are rendered at S).
    rotate: train the 4-way rotation task on every image at every quarter turn.
    seed: example order and crops.
    mesh: a 1-D "data" mesh; None = every device.

  Returns:
    {"heads": {kind: {task: {"w": [F, C], "b": [C]}}} (numpy), "loss": {kind/task: per-epoch
    mean training loss}, "epoch_seconds": [per epoch; the first includes compilation],
    "steps_per_epoch", "num_examples" (per epoch), "diverged" {kind/task: whether that
    layer's last-epoch loss is non-finite or above its first epoch's}}.
  """
  mesh = make_mesh() if mesh is None else mesh
  images = np.asarray(images)
  if rotate:
    num_classes, targets = {ROTATION: 4}, {}
  tasks = tuple(sorted(num_classes))
  kinds = tuple(kinds)
  batch = math.ceil(int(p.batch_size) / mesh.size) * mesh.size
  num_examples = len(images) * (4 if rotate else 1)
  steps_per_epoch = math.ceil(num_examples / batch)
  aug_cfg = augment_config(p, image_size, rotate)
  tx = optax.chain(
    optax.add_decayed_weights(float(p.weight_decay)),
    optax.sgd(learning_rate(p, steps_per_epoch), momentum=float(p.momentum)),
  )
  replicated = NamedSharding(mesh, P())
  probe = jax.eval_shape(
    lambda v, x: extract.batch_features(model, v, x, kinds),
    variables,
    jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32),
  )
  key = jax.random.key(seed)
  heads = jax.device_put(
    _init_heads(key, {k: v.shape[1] for k, v in probe.items()}, num_classes), replicated
  )
  opt_state = jax.device_put(tx.init(heads), replicated)
  variables = jax.device_put(variables, replicated)
  step = _step_fn(model, aug_cfg, kinds, tasks, tx, mesh, rotate)
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  targets = {t: np.asarray(targets[t], np.int32) for t in targets}
  losses, seconds = {}, []
  for epoch in range(int(p.epochs)):
    t0 = time.perf_counter()
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    batches = prefetch.prefetch_to_device(
      _batches(images, targets, order, batch, rotate), sharding, size=2
    )
    totals = None
    try:
      for i, b in enumerate(batches):
        heads, opt_state, loss = step(
          heads, opt_state, variables, b, jax.random.fold_in(key, epoch * steps_per_epoch + i + 1)
        )
        totals = loss if totals is None else jax.tree.map(jnp.add, totals, loss)
    finally:
      batches.close()
    for name, total in jax.device_get(totals).items():
      losses.setdefault(name, []).append(float(total) / steps_per_epoch)
    seconds.append(round(time.perf_counter() - t0, 3))
    logging.info(
      "MoCo linear protocol%s: epoch %d/%d, %.1f s, loss %s",
      " (rotation)" if rotate else "",
      epoch + 1,
      p.epochs,
      seconds[-1],
      ", ".join(f"{k} {v[-1]:.3f}" for k, v in losses.items()),
    )
  diverged = {k: not math.isfinite(v[-1]) or v[-1] > v[0] for k, v in losses.items()}
  if any(diverged.values()):
    logging.warning(
      "MoCo linear protocol: the training loss went up or is non-finite for %s (per epoch: "
      "%s); lower eval_config.probe.sgd_lr",
      ", ".join(k for k, bad in diverged.items() if bad),
      {k: v for k, v in losses.items() if diverged[k]},
    )
  return {
    "heads": jax.device_get(heads),
    "loss": losses,
    "epoch_seconds": seconds,
    "steps_per_epoch": steps_per_epoch,
    "num_examples": num_examples,
    "diverged": diverged,
  }


def logits(head: dict, features) -> np.ndarray:
  """`[N, C]` scores of one trained layer on features `[N, F]`."""
  return np.asarray(features, np.float32) @ head["w"] + head["b"]
