"""LooC pretraining: the train state, the jitted sharded train step and ``programs``, the one
builder of a config's model, optimizer, initial state and step (the loop: ``leave_one_out.run``).

One step, all on device (docs/method.md, "Encoders"):

  uint8 images [B, H0, W0, 3] + original aspect ratios [B] (batch sharded over "data")
    -> augment.make_views: [n+2, B, S, S, 3], ordered q, k_0, k_1..k_n
    -> key encoder (EMA of backbone and heads), all n+1 key views in one call: k [n+1, B, H, D]
    -> query encoder with gradients: q [B, H, D]
    -> losses.sharded_looc_loss: local queries against keys all-gathered over the mesh
    -> + the active auxiliary objectives' terms (leave_one_out.objectives: AugSelf, E-SSL;
       CASSLE conditions both encoders' heads on each view's augmentation descriptor)
    -> SGD/LARS update, EMA update, optional per-space queue update.

The step is ``jax.jit`` over a Mesh of every device (all hosts); BatchNorm statistics are over
the global batch because the batch dimension is one sharded array, or, with shuffle-BN
(``model.key_bn``), over G groups of it: the query batch in order, the key batch in the groups
of a random permutation of the images (``resnet.shuffled_group_ids``; no data moves, the keys
stay in their order). The state is donated.

A step whose loss or gradient is not finite leaves params, optimizer state, EMA and queue as
they were (``nonfinite_steps`` counts it). The lr schedule and the EMA ramp both follow
``applied_updates`` (= optax's count), and the logged ``lr`` is the lr of the update the step
applied (0 for a skipped step).
"""

from __future__ import annotations

import functools
import json
from typing import Any
from typing import Callable
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import augment
from leave_one_out import config as config_lib
from leave_one_out import losses
from leave_one_out import models
from leave_one_out import objectives
from leave_one_out import optimizer
from leave_one_out import resnet
from leave_one_out import sharding
from leave_one_out.sharding import DATA_AXIS


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue. ``queue`` is `[H, Q, D]`, or None without a queue."""

  step: jax.Array
  params: Any
  batch_stats: Any
  ema_params: Any
  ema_batch_stats: Any
  opt_state: Any
  queue: jax.Array | None
  rng: jax.Array  # raw uint32 key data; the step's key is fold_in(rng, step)
  nonfinite_steps: jax.Array  # steps whose update was skipped for a non-finite loss/gradient


def space_names(cfg) -> list[str]:
  """Names of the H = n+1 spaces: "invariant" then the augmentations with a space of their own."""
  return ["invariant"] + list(cfg.augment.spaces)


def init_state(cfg, model, tx, rng) -> TrainState:
  """A fresh state from ``rng`` (``PRNGKey(cfg.seed)``; run it under jit with replicated
  out_shardings). The key is an argument, not a constant, so every seed shares one compiled
  program (and its persistent cache entry)."""
  init_rng, queue_rng, run_rng = jax.random.split(rng, 3)
  dummy = jnp.zeros((2, cfg.augment.image_size, cfg.augment.image_size, 3), jnp.float32)
  variables = model.init(init_rng, dummy, train=False)
  params, batch_stats = variables["params"], variables["batch_stats"]
  queue = None
  if cfg.loss.queue_size:
    queue = jax.random.normal(
      queue_rng, (model.num_spaces, cfg.loss.queue_size, model.embedding_dim)
    )
    queue = queue / jnp.maximum(jnp.linalg.norm(queue, axis=-1, keepdims=True), 1e-12)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=batch_stats,
    ema_params=params,
    ema_batch_stats=batch_stats,
    opt_state=tx.init(params),
    queue=queue,
    rng=run_rng,  # legacy uint32 [2] key: checkpointable as a plain array
    nonfinite_steps=jnp.zeros((), jnp.int32),
  )


def applied_updates(state: TrainState) -> jax.Array:
  """Updates applied so far: steps taken minus those skipped as non-finite (optax's count)."""
  return state.step - state.nonfinite_steps


def train_step(state: TrainState, batch, hp, *, cfg, model, mesh):
  """One LooC step.

  Args:
    state: the replicated train state.
    batch: {"image": uint8 `[B, H0, W0, 3]`, "aspect": float32 `[B]` (each original image's
      width / height, for torchvision crop semantics), optionally "valid": bool `[B]` (False:
      an unreadable file's empty slot, masked out of the loss)}, batch sharded over ``mesh``.
    hp: ``optimizer.hyperparams`` of the config (lr schedule, momentum, weight decay, EMA
      momentum, temperature), replicated.
  """
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  views, view_params = augment.make_views(rng, batch["image"], cfg.augment, batch["aspect"])
  bn = batch_norm_groups(
    cfg, mesh, jax.random.fold_in(rng, _SHUFFLE_STREAM), views.shape[1], views.shape[0] - 1
  )
  drawn = {"images": batch["image"], "aspect": batch["aspect"], "view_params": view_params}
  return step_on_views(
    state,
    views,
    hp,
    bn,
    cfg=cfg,
    model=model,
    mesh=mesh,
    valid=batch.get("valid"),
    drawn=dict(drawn, rng=rng),
  )


def step_on_views(state, views, hp, bn, *, cfg, model, mesh, valid=None, drawn=None):
  """``train_step`` after its random draws: the step on given views and BatchNorm groups.

  Args:
    state, hp: as for ``train_step``.
    views: float32 `[n+2, B, S, S, 3]` in [0, 1], ordered q, k_0, k_1..k_n (``augment.make_views``).
    bn: the query and key encoders' BatchNorm arguments, ``batch_norm_groups``.
    valid: bool `[B]` or None, as ``batch["valid"]``.
    drawn: what the auxiliary objectives read besides the views: {"images": the batch's uint8
      images, "aspect", "view_params": the views' parameter pytree, "rng": the step's key};
      None when no objective is on (tests feed fixed views without it).
  Returns ``(state, metrics)`` as ``train_step``: tests feed it fixed views and a fixed shuffle.
  """
  if drawn is None and objectives.active(cfg):
    raise ValueError(
      "the auxiliary objectives (config.objectives) need the views' parameters: "
      "call train_step, or pass drawn= to step_on_views"
    )
  tx, schedule = optimizer.create(cfg, hp)
  batch_sharded = lambda x, spec: jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
  views = batch_sharded(views, P(None, DATA_AXIS))  # [n+2, B, S, S, 3]: q, k_0, k_1..k_n
  num_keys, batch_size = views.shape[0] - 1, views.shape[1]
  query_bn, key_bn = bn
  # Keys batch-major (image b's K keys at rows b K .. b K + K - 1), so each device keeps its
  # images; CASSLE's descriptors [n+2, B, C] (else None) go with their views.
  batch_major = lambda x: jnp.swapaxes(x, 0, 1).reshape((batch_size * num_keys,) + x.shape[2:])
  condition = (
    None if drawn is None else objectives.condition(cfg, drawn["images"], drawn["view_params"])
  )

  # Key encoder: all n+1 key views in one call.
  key_out, key_updates = model.apply(
    {"params": state.ema_params, "batch_stats": state.ema_batch_stats},
    batch_major(views[1:]),
    train=True,
    mutable=["batch_stats"],
    condition=None if condition is None else batch_major(condition[1:]),
    **key_bn,
  )
  k = key_out["embeddings"].reshape((batch_size, num_keys) + key_out["embeddings"].shape[1:])
  k = jax.lax.stop_gradient(jnp.swapaxes(k, 0, 1))  # [n+1, B, H, D]
  k = batch_sharded(k, P(None, DATA_AXIS))
  queue = state.queue if cfg.loss.queue_size else None

  def loss_fn(params):
    out, updates = model.apply(
      {"params": params, "batch_stats": state.batch_stats},
      views[0],
      train=True,
      mutable=["batch_stats"],
      condition=None if condition is None else condition[0],
      **query_bn,
    )
    loss, metrics = losses.sharded_looc_loss(
      out["embeddings"],
      k,
      mesh=mesh,
      axis=DATA_AXIS,
      temperature=hp["temperature"],
      queue=queue,
      z0_positives=cfg.loss.z0_positives,
      space_reduction=cfg.loss.space_reduction,
      valid=valid,
    )
    batch_stats = updates["batch_stats"]
    if objectives.active(cfg):  # off: the step is exactly the plain one
      features = key_out["feature"].reshape((batch_size, num_keys, -1))
      aux, aux_metrics, batch_stats = objectives.terms(
        objectives.Context(
          model=model,
          params=params,
          batch_stats=batch_stats,
          cfg=cfg,
          images=drawn["images"],
          aspect=drawn["aspect"],
          valid=jnp.ones((batch_size,), bool) if valid is None else valid,
          view_params=drawn["view_params"],
          query=out,
          key_features=jax.lax.stop_gradient(jnp.swapaxes(features, 0, 1)),  # [n+1, B, F]
          rng=drawn["rng"],
          query_bn=query_bn,
          shard=batch_sharded,
        )
      )
      loss, metrics = loss + aux, {**metrics, **aux_metrics}
    return loss, (metrics, batch_stats)

  (loss, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  applied = applied_updates(state)  # optax's count: this update's lr is schedule(applied)
  m = optimizer.ema_momentum(cfg, hp, applied)
  ema_params = jax.tree.map(lambda e, p: m * e + (1.0 - m) * p, state.ema_params, params)
  if cfg.loss.queue_size:
    new_queue = jnp.concatenate([jnp.swapaxes(k[0], 0, 1), state.queue], axis=1)
    new_queue = new_queue[:, : cfg.loss.queue_size]
  else:
    new_queue = state.queue

  finite = jnp.isfinite(loss) & jnp.all(
    jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
  )
  updated = state.replace(
    step=state.step + 1,
    params=params,
    batch_stats=batch_stats,
    ema_params=ema_params,
    ema_batch_stats=key_updates["batch_stats"],
    opt_state=opt_state,
    queue=new_queue,
  )
  skipped = state.replace(step=state.step + 1, nonfinite_steps=state.nonfinite_steps + 1)
  new_state = jax.tree.map(lambda a, b: jnp.where(finite, a, b), updated, skipped)
  lr = jnp.where(finite, schedule(applied), 0.0)  # the lr of the update actually applied
  metrics = dict(metrics, loss=loss, finite=finite, lr=lr, ema_momentum=m)
  return new_state, metrics


_SHUFFLE_STREAM = 1  # fold_in(step key, this): the shuffle-BN permutation's key


def batch_norm_groups(
  cfg, mesh, rng, batch_size: int, num_keys: int, image_groups=None
) -> tuple[dict, dict]:
  """``model.apply`` keyword arguments of the query and key encoders' BatchNorm groups.

  Global BatchNorm: no arguments. Shuffle-BN (``models.key_bn_mode``): the query batch `[B]`
  in G groups in order; the key batch `[B * K]` (batch-major, the K keys of an image together)
  in the G groups of a random permutation of the B images, so that an image's keys share a
  group and (with probability about 1 - 1/G, as in MoCo v2) not its query's. ``image_groups``
  int32 `[B]` fixes the images' groups (a given permutation) instead of drawing them from ``rng``.
  """
  if models.key_bn_mode(cfg.model, cfg.loss.queue_size, mesh.size) != "shuffle":
    return {}, {}
  groups = models.bn_groups(cfg.model, mesh.size)
  if image_groups is None:
    image_groups = resnet.shuffled_group_ids(rng, batch_size, groups)  # [B]
  key_ids = jax.lax.with_sharding_constraint(
    jnp.repeat(image_groups, num_keys), NamedSharding(mesh, P(DATA_AXIS))
  )
  return {"bn_groups": groups}, {"bn_groups": groups, "bn_group_ids": key_ids}


def _jit_train_step(cfg, model, mesh):
  """``train_step`` under jit, ``(state, batch, hp) -> (state, metrics)``: state and ``hp``
  replicated, the state donated, the batch sharded over devices; compiled with
  ``sharding.train_step_options`` (on CPUs: convolutions on Eigen). Configs that differ only
  in ``optimizer.RUNTIME_FIELDS`` compile to the same program."""
  replicated = NamedSharding(mesh, P())
  step = functools.partial(train_step, cfg=cfg, model=model, mesh=mesh)
  return jax.jit(
    step,
    in_shardings=(replicated, NamedSharding(mesh, P(DATA_AXIS)), replicated),
    out_shardings=(replicated, replicated),
    donate_argnums=0,
    compiler_options=sharding.train_step_options(mesh),
  )


def _bind_hyperparams(step, hp, mesh):
  """``(state, batch) -> (state, metrics)``: the jitted ``step`` with the hyperparameters
  ``hp`` (``optimizer.hyperparams``), placed on the devices of ``mesh`` once."""
  hp = jax.device_put(hp, NamedSharding(mesh, P()))
  return lambda state, batch: step(state, batch, hp)


def _jit_init(cfg, model, tx, mesh):
  """``init_state`` under jit: PRNGKey -> a fresh state replicated over ``mesh``."""
  return jax.jit(
    functools.partial(init_state, cfg, model, tx),
    out_shardings=NamedSharding(mesh, P()),
    compiler_options=sharding.init_options(mesh),
  )


class Programs(NamedTuple):
  """A config's model, optimizer and jitted programs on one mesh (``programs``)."""

  model: models.LooCModel
  tx: optax.GradientTransformation  # ``optimizer.create`` with the config's numbers
  schedule: optax.Schedule
  num_steps: int
  init: Callable[[jax.Array], TrainState]  # PRNGKey -> a fresh state, replicated
  train_step: Callable  # (state, batch, hp) -> (state, metrics): ``train_step`` under jit
  step: Callable  # (state, batch) -> (state, metrics): ``train_step`` with the config's hp
  hyperparams: dict  # ``optimizer.hyperparams`` of the config (the ``hp`` bound in ``step``)

  def new_state(self, seed: int) -> TrainState:
    """A fresh state from ``seed`` (a run's ``cfg.seed``), replicated over the mesh."""
    return self.init(jax.random.PRNGKey(seed))

  def abstract_state(self) -> TrainState:
    """Shapes, dtypes and shardings of the state without allocating it (for restores)."""
    return self.init.eval_shape(jax.eval_shape(jax.random.PRNGKey, 0))  # the key's shape only


# The config sections the model, optimizer, init and train step read. The seed reaches the
# init as its key argument; the data reach the step as its batch (shapes) and, through the
# hyperparameters, steps_per_epoch; the fields of ``optimizer.RUNTIME_FIELDS`` as its ``hp``.
PROGRAM_SECTIONS = ("augment", "model", "loss", "train", "objectives")


def programs(cfg, mesh, steps_per_epoch: int) -> Programs:
  """The model, optimizer, init and train step of ``cfg`` on ``mesh``.

  The configs of one process that agree on ``PROGRAM_SECTIONS`` but for
  ``optimizer.RUNTIME_FIELDS`` (the claims experiment's seeds, a run and its resumption, runs
  that log, save or profile at other steps, an lr or budget sweep) share one model, init and
  jitted train step, so those are traced and compiled once. They are built from those sections
  with the runtime fields set to None: a program that read one of them, or another field, would
  fail when traced, not reuse a stale value.
  """
  sections = {name: json.loads(cfg[name].to_json()) for name in PROGRAM_SECTIONS}
  for name, fields in optimizer.RUNTIME_FIELDS.items():
    sections[name].update(dict.fromkeys(fields))
  model, init, jitted = _programs(json.dumps(sections, sort_keys=True), mesh)
  hp = optimizer.hyperparams(cfg, steps_per_epoch)
  tx, schedule = optimizer.create(cfg, hp)
  return Programs(
    model,
    tx,
    schedule,
    int(hp["total_steps"]),
    init,
    jitted,
    _bind_hyperparams(jitted, hp, mesh),
    hp,
  )


@functools.lru_cache(maxsize=4)
def _programs(sections_json: str, mesh):
  cfg = config_lib.from_json(json.loads(sections_json))
  model = models.build_model(cfg)
  tx, _ = optimizer.create(cfg)  # the optimizer state's structure
  return model, _jit_init(cfg, model, tx, mesh), _jit_train_step(cfg, model, mesh)
