"""The rows of the claims experiment that are not contrastive pretraining: the network at its
initialisation with calibrated BatchNorm statistics, and the same network trained supervised.

Both leave a checkpoint in the standard format (``run.checkpoints``: the train state of
``train.programs`` and the meta record, with a "baseline" entry saying what made it), so that
``leave_one_out.evaluate`` loads them like any pretraining run. Both start from the state
``train.programs(cfg, ...).new_state(cfg.seed)`` gives every row of that seed.

- ``calibrate_batch_stats``: forward passes in train mode over training views (one view per
  image, every augmentation of the config drawn fresh, as the query's), no parameter update;
  the BatchNorm statistics become the mean of the batches' statistics. The initialisation's
  statistics (mean 0, variance 1) would describe no input, so a random-init control that kept
  them would understate what random features carry.
- ``supervised_step``: cross-entropy of a linear classifier on the downstream feature (the
  backbone's V), trained together with the encoder by the config's optimizer and schedule
  (``optimizer.create``: the same lr, momentum, weight decay and mask, warm-up and cosine as
  every row), on one view per image with the config's augmentations.

The step functions are pure and jitted once per config (every seed shares them); the
hyperparameters are an argument, as in ``train.train_step``. A supervised run saves its final
step only: an interrupted one starts again (the classifier is not part of the train state).
"""

from __future__ import annotations

import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from leave_one_out import augment
from leave_one_out import config as config_lib
from leave_one_out import data
from leave_one_out import models
from leave_one_out import optimizer
from leave_one_out import render
from leave_one_out import sharding
from leave_one_out import train
from leave_one_out.run import checkpoints
from leave_one_out.run import workdir as workdir_lib

CALIBRATION_STREAM = 2  # fold_in(PRNGKey(seed), this): the calibration views' key
HEAD_STREAM = 3  # fold_in(PRNGKey(seed), this): the supervised classifier's initial weights


def one_view(rng, images, augment_cfg):
  """float32 `[B, S, S, 3]`: one view of each uint8 image, every augmentation drawn fresh."""
  params = augment.sample_params(rng, images.shape[0], augment_cfg)
  return render.render(images, params, augment_cfg)


def _batch_stats(variables, images, rng, *, model, augment_cfg):
  """The BatchNorm statistics of one batch of training views (train mode, momentum 0: the
  running averages become the batch's own statistics)."""
  _, updates = model.clone(bn_momentum=0.0).apply(
    variables, one_view(rng, images, augment_cfg), train=True, mutable=["batch_stats"]
  )
  return updates["batch_stats"]


@functools.lru_cache(maxsize=8)
def _jitted_batch_stats(model, augment_json: str):
  augment_cfg = config_lib.from_json(json.loads(augment_json))
  return jax.jit(functools.partial(_batch_stats, model=model, augment_cfg=augment_cfg))


def calibrate_batch_stats(
  model, variables: dict, images: np.ndarray, augment_cfg, *, seed: int, batch_size: int = 256
):
  """BatchNorm statistics of ``variables`` calibrated on one training view of every image.

  Args:
    model: the ``models.LooCModel``; variables: {"params", "batch_stats"}.
    images: uint8 `[N, S0, S0, 3]`, the training images (one pass, in order).
    augment_cfg: the augment section the views are drawn with.
    seed: the views' key is ``fold_in(PRNGKey(seed), CALIBRATION_STREAM)``, then the batch.
  Returns:
    The ``batch_stats`` tree: per BatchNorm, the mean over batches of the batch mean and of
    the batch variance (weighted by batch size).
  """
  stats_fn = _jitted_batch_stats(model, augment_cfg.to_json())
  key = jax.random.fold_in(jax.random.PRNGKey(seed), CALIBRATION_STREAM)
  total, count = None, 0
  for i, start in enumerate(range(0, len(images), batch_size)):
    batch = images[start : start + batch_size]
    stats = stats_fn(variables, batch, jax.random.fold_in(key, i))
    n = len(batch)
    weighted = jax.tree.map(lambda s: s * n, stats)  # noqa: B023 (used at once)
    total = weighted if total is None else jax.tree.map(jnp.add, total, weighted)
    count += n
  if total is None:
    raise ValueError("calibrating BatchNorm statistics needs at least one image")
  return jax.tree.map(lambda s: s / count, total)


def initial_state(cfg, mesh=None, steps_per_epoch: int = 1) -> train.TrainState:
  """The state every row of ``cfg.seed`` starts from, and the config's programs."""
  mesh = sharding.make_mesh() if mesh is None else mesh
  config_lib.validate(cfg, num_devices=mesh.size)
  compiled = train.programs(cfg, mesh, steps_per_epoch)
  return compiled.new_state(cfg.seed), compiled


def initial_variables(cfg, images: np.ndarray, *, batch_size: int = 256, mesh=None) -> dict:
  """{"params", "batch_stats"} of the network at its initialisation (``cfg.seed``), BatchNorm
  statistics calibrated on one training view of each of ``images``."""
  state, compiled = initial_state(cfg, mesh)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  stats = calibrate_batch_stats(
    compiled.model, variables, images, cfg.augment, seed=cfg.seed, batch_size=batch_size
  )
  return {"params": state.params, "batch_stats": stats}


def _save(cfg, workdir: str, state, step: int, baseline: str) -> None:
  ckpt = checkpoints.Checkpointer(workdir, async_save=False)
  try:
    meta = {**checkpoints.meta_record(cfg, step), "baseline": baseline}
    ckpt.save(step, state, meta, force=True)
  finally:
    ckpt.close()


def _finished(cfg, workdir: str, step: int) -> bool:
  """Whether ``workdir`` holds this config's checkpoint of ``step`` (another config: error)."""
  ckpt = checkpoints.Checkpointer(workdir, async_save=False)
  try:
    workdir_lib.prepare(workdir, "auto", ckpt, cfg)
    return ckpt.latest_step() == step
  finally:
    ckpt.close()


def save_random_init(cfg, workdir: str) -> dict:
  """Saves the initialisation of ``cfg.seed`` as step 0, BatchNorm statistics calibrated on one
  epoch of the run's training images (``data.create_train_source``), one view each."""
  if _finished(cfg, workdir, 0):
    return {"step": 0}
  state, compiled = initial_state(cfg)
  images = data.create_train_source(cfg).images
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  stats = calibrate_batch_stats(
    compiled.model, variables, images, cfg.augment, seed=cfg.seed, batch_size=256
  )
  state = state.replace(batch_stats=stats, ema_batch_stats=stats)
  _save(
    cfg,
    workdir,
    state,
    0,
    f"random init: BatchNorm statistics calibrated on one training view of each of the "
    f"{len(images)} training images, no parameter update",
  )
  return {"step": 0, "calibration_images": len(images)}


# ------------------------------------------------------------------ supervised


def init_classifier(rng, feature_dim: int, num_classes: int) -> dict:
  """{"w": float32 `[F, C]` (LeCun normal), "b": `[C]` zeros}."""
  w = jax.random.normal(rng, (feature_dim, num_classes), jnp.float32) / np.sqrt(feature_dim)
  return {"w": w, "b": jnp.zeros((num_classes,), jnp.float32)}


def supervised_step(state, head, head_opt, images, labels, hp, *, cfg, model):
  """One supervised step.

  Args:
    state: the ``train.TrainState`` (its ``params``, ``batch_stats`` and ``opt_state`` train;
      the EMA copies follow the encoder, so either encoder loads the same network).
    head: the classifier (``init_classifier``); head_opt: its optimizer state.
    images: uint8 `[B, S0, S0, 3]`; labels: int32 `[B]`.
    hp: ``optimizer.hyperparams`` of ``cfg``.
  Returns:
    (state, head, head_opt, {"loss", "top1", "lr"}).
  """
  tx, schedule = optimizer.create(cfg, hp)
  lr = schedule(train.applied_updates(state))  # the lr of this step's update
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  views = one_view(rng, images, cfg.augment)

  def loss_fn(params, head):
    out, updates = model.apply(
      {"params": params, "batch_stats": state.batch_stats},
      views,
      train=True,
      mutable=["batch_stats"],
    )
    logits = out["feature"] @ head["w"] + head["b"]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    top1 = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, (updates["batch_stats"], top1)

  (loss, (batch_stats, top1)), (grads, head_grads) = jax.value_and_grad(
    loss_fn, argnums=(0, 1), has_aux=True
  )(state.params, head)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  head_updates, head_opt = tx.update(head_grads, head_opt, head)
  head = optax.apply_updates(head, head_updates)
  state = state.replace(
    step=state.step + 1,
    params=params,
    batch_stats=batch_stats,
    ema_params=params,
    ema_batch_stats=batch_stats,
    opt_state=opt_state,
  )
  return state, head, head_opt, {"loss": loss, "top1": top1, "lr": lr}


@functools.lru_cache(maxsize=4)
def _jitted_supervised_step(cfg_json: str):
  cfg = config_lib.from_json(json.loads(cfg_json))
  step = functools.partial(supervised_step, cfg=cfg, model=models.build_model(cfg))
  return jax.jit(step, donate_argnums=(0, 1, 2))


def _program_json(cfg) -> str:
  """The sections the step reads, with the seed-dependent and runtime fields left out, so that
  every seed of a row shares one compiled step."""
  sections = {name: json.loads(cfg[name].to_json()) for name in train.PROGRAM_SECTIONS}
  for name, names in optimizer.RUNTIME_FIELDS.items():
    sections[name].update(dict.fromkeys(names))
  return json.dumps(sections, sort_keys=True)


def train_supervised(cfg, workdir: str, label: str) -> dict:
  """Trains the encoder of ``cfg`` supervised on the training source's ``label`` for the
  config's steps (budget, batch and optimizer of every row) and saves the final step.

  Returns the final step, the mean loss and top-1 (on the training views) of the last
  ``log_every_steps`` steps, and the seconds taken.
  """
  source = data.create_train_source(cfg)
  labels = (getattr(source, "labels", None) or {}).get(label)
  if labels is None:
    raise data.DataError(
      f"the supervised baseline needs the label {label!r} of the training images; the source "
      f"{cfg.data.name!r} gives {sorted(getattr(source, 'labels', None) or {})}"
    )
  mesh = sharding.make_mesh()
  state, compiled = initial_state(cfg, mesh, source.steps_per_epoch)
  if _finished(cfg, workdir, compiled.num_steps):
    return {"step": compiled.num_steps}
  num_classes = int(labels.max()) + 1
  head_key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), HEAD_STREAM)
  head = init_classifier(head_key, compiled.model.feature_dim, num_classes)
  head_opt = compiled.tx.init(head)
  step_fn = _jitted_supervised_step(_program_json(cfg))
  hp = compiled.hyperparams
  history, t0 = [], time.perf_counter()
  for step in range(compiled.num_steps):
    idx = source.indices(step)
    state, head, head_opt, metrics = step_fn(
      state, head, head_opt, source.images[idx], labels[idx].astype(np.int32), hp
    )
    history.append(metrics)
    history = history[-cfg.log_every_steps :]
    if (step + 1) % cfg.log_every_steps == 0:
      last = jax.device_get(history[-1])
      logging.info(
        "supervised %d/%d | loss %.4f | top-1 %.1f%%",
        step + 1,
        compiled.num_steps,
        last["loss"],
        100 * last["top1"],
      )
  recent = jax.device_get(history)
  _save(
    cfg,
    workdir,
    state,
    compiled.num_steps,
    f"supervised: cross-entropy on {label!r} ({num_classes} classes) with a linear classifier "
    "on the backbone feature, one view per image with the config's augmentations",
  )
  return {
    "step": compiled.num_steps,
    "loss/supervised": float(np.mean([m["loss"] for m in recent])),
    "top1/supervised": float(np.mean([m["top1"] for m in recent])),
    "seconds": round(time.perf_counter() - t0, 1),
  }
