"""LooC pretraining: train state, the jitted sharded train step, and the loop.

One step, all on device (docs/method.md, "Encoders"):

  uint8 images [B, H0, W0, 3] + original aspect ratios [B] (batch sharded over "data")
    -> augment.make_views: [n+2, B, S, S, 3], ordered q, k_0, k_1..k_n
    -> key encoder (EMA of backbone and heads), all n+1 key views in one call: k [n+1, B, H, D]
    -> query encoder with gradients: q [B, H, D]
    -> losses.sharded_looc_loss: local queries against keys all-gathered over the mesh
    -> SGD/LARS update, EMA update, optional per-space queue update.

The step is ``jax.jit`` over a Mesh of every device (all hosts); BatchNorm statistics are over
the global batch because the batch dimension is one sharded array, or, with shuffle-BN
(``model.key_bn``), over G groups of it: the query batch in order, the key batch in the groups
of a random permutation of the images (``models.shuffled_group_ids``; no data moves, the keys
stay in their order). The state is donated.

A step whose loss or gradient is not finite leaves params, optimizer state, EMA and queue as
they were (``nonfinite_steps`` counts it). The lr schedule and the EMA ramp both follow
``applied_updates`` (= optax's count), and the logged ``lr`` is the lr of the update the step
applied (0 for a skipped step).
"""

from __future__ import annotations

import functools
import json
import signal
import threading
import time
from typing import Any, Callable, NamedTuple

import flax
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from leave_one_out import augment
from leave_one_out import checkpoints
from leave_one_out import config as config_lib
from leave_one_out import data
from leave_one_out import losses
from leave_one_out import metrics_log
from leave_one_out import models
from leave_one_out import optimizer
from leave_one_out import progress
from leave_one_out import summaries
from leave_one_out import workdir as workdir_lib
from leave_one_out import xla_options
from leave_one_out.data import prefetch
from leave_one_out.evaluate import online
from leave_one_out.sharding import DATA_AXIS, make_mesh

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
        queue_rng, (model.num_spaces, cfg.loss.queue_size, model.embedding_dim))
    queue = queue / jnp.maximum(jnp.linalg.norm(queue, axis=-1, keepdims=True), 1e-12)
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
      ema_params=params, ema_batch_stats=batch_stats, opt_state=tx.init(params), queue=queue,
      rng=run_rng,  # legacy uint32 [2] key: checkpointable as a plain array
      nonfinite_steps=jnp.zeros((), jnp.int32))


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
  tx, schedule = optimizer.create(cfg, hp)
  batch_sharded = lambda x, spec: jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  views, _ = augment.make_views(rng, batch["image"], cfg.augment, batch["aspect"])
  views = batch_sharded(views, P(None, DATA_AXIS))  # [n+2, B, S, S, 3]: q, k_0, k_1..k_n
  num_keys, batch_size = views.shape[0] - 1, views.shape[1]
  query_bn, key_bn = batch_norm_groups(cfg, mesh, jax.random.fold_in(rng, _SHUFFLE_STREAM),
                                       batch_size, num_keys)

  # Key encoder: all n+1 key views in one call, batch-major so each device keeps its images.
  key_images = jnp.swapaxes(views[1:], 0, 1).reshape((batch_size * num_keys,) + views.shape[2:])
  key_out, key_updates = model.apply(
      {"params": state.ema_params, "batch_stats": state.ema_batch_stats}, key_images,
      train=True, mutable=["batch_stats"], **key_bn)
  k = key_out["embeddings"].reshape((batch_size, num_keys) + key_out["embeddings"].shape[1:])
  k = jax.lax.stop_gradient(jnp.swapaxes(k, 0, 1))  # [n+1, B, H, D]
  k = batch_sharded(k, P(None, DATA_AXIS))
  queue = state.queue if cfg.loss.queue_size else None

  def loss_fn(params):
    out, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, views[0],
                               train=True, mutable=["batch_stats"], **query_bn)
    loss, metrics = losses.sharded_looc_loss(
        out["embeddings"], k, mesh=mesh, axis=DATA_AXIS, temperature=hp["temperature"],
        queue=queue, z0_positives=cfg.loss.z0_positives,
        space_reduction=cfg.loss.space_reduction, valid=batch.get("valid"))
    return loss, (metrics, updates["batch_stats"])

  (loss, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  applied = applied_updates(state)  # optax's count: this update's lr is schedule(applied)
  m = optimizer.ema_momentum(cfg, hp, applied)
  ema_params = jax.tree.map(lambda e, p: m * e + (1.0 - m) * p, state.ema_params, params)
  if cfg.loss.queue_size:
    new_queue = jnp.concatenate([jnp.swapaxes(k[0], 0, 1), state.queue], axis=1)
    new_queue = new_queue[:, :cfg.loss.queue_size]
  else:
    new_queue = state.queue

  finite = jnp.isfinite(loss) & jnp.all(
      jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
  updated = state.replace(
      step=state.step + 1, params=params, batch_stats=batch_stats, ema_params=ema_params,
      ema_batch_stats=key_updates["batch_stats"], opt_state=opt_state, queue=new_queue)
  skipped = state.replace(step=state.step + 1, nonfinite_steps=state.nonfinite_steps + 1)
  new_state = jax.tree.map(lambda a, b: jnp.where(finite, a, b), updated, skipped)
  lr = jnp.where(finite, schedule(applied), 0.0)  # the lr of the update actually applied
  metrics = dict(metrics, loss=loss, finite=finite, lr=lr, ema_momentum=m)
  return new_state, metrics


_SHUFFLE_STREAM = 1  # fold_in(step key, this): the shuffle-BN permutation's key


def batch_norm_groups(cfg, mesh, rng, batch_size: int, num_keys: int) -> tuple[dict, dict]:
  """``model.apply`` keyword arguments of the query and key encoders' BatchNorm groups.

  Global BatchNorm: no arguments. Shuffle-BN (``models.key_bn_mode``): the query batch `[B]`
  in G groups in order; the key batch `[B * K]` (batch-major, the K keys of an image together)
  in the G groups of a random permutation of the B images, so that an image's keys share a
  group and (with probability about 1 - 1/G, as in MoCo v2) not its query's.
  """
  if models.key_bn_mode(cfg.model, cfg.loss.queue_size, mesh.size) != "shuffle":
    return {}, {}
  groups = models.bn_groups(cfg.model, mesh.size)
  image_groups = models.shuffled_group_ids(rng, batch_size, groups)  # [B]
  key_ids = jax.lax.with_sharding_constraint(jnp.repeat(image_groups, num_keys),
                                             NamedSharding(mesh, P(DATA_AXIS)))
  return {"bn_groups": groups}, {"bn_groups": groups, "bn_group_ids": key_ids}


def jit_train_step(cfg, model, mesh):
  """``train_step`` under jit, ``(state, batch, hp) -> (state, metrics)``: state and ``hp``
  replicated, the state donated, the batch sharded over devices; compiled with
  ``xla_options.train_step_options`` (on CPUs: convolutions on Eigen). Configs that differ only
  in ``optimizer.RUNTIME_FIELDS`` compile to the same program."""
  replicated = NamedSharding(mesh, P())
  step = functools.partial(train_step, cfg=cfg, model=model, mesh=mesh)
  return jax.jit(step, in_shardings=(replicated, NamedSharding(mesh, P(DATA_AXIS)), replicated),
                 out_shardings=(replicated, replicated), donate_argnums=0,
                 compiler_options=xla_options.train_step_options(mesh))


def bind_hyperparams(step, hp, mesh):
  """``(state, batch) -> (state, metrics)``: the jitted ``step`` with the hyperparameters
  ``hp`` (``optimizer.hyperparams``), placed on the devices of ``mesh`` once."""
  hp = jax.device_put(hp, NamedSharding(mesh, P()))
  return lambda state, batch: step(state, batch, hp)


def compile_train_step(cfg, model, mesh, steps_per_epoch: int):
  """``jit_train_step`` of ``cfg`` with its hyperparameters bound: ``(state, batch)``."""
  return bind_hyperparams(jit_train_step(cfg, model, mesh),
                          optimizer.hyperparams(cfg, steps_per_epoch), mesh)


def jit_init(cfg, model, tx, mesh):
  """``init_state`` under jit: PRNGKey -> a fresh state replicated over ``mesh``."""
  return jax.jit(functools.partial(init_state, cfg, model, tx),
                 out_shardings=NamedSharding(mesh, P()),
                 compiler_options=xla_options.init_options(mesh))


def create_state(cfg, model, tx, mesh) -> TrainState:
  return jit_init(cfg, model, tx, mesh)(jax.random.PRNGKey(cfg.seed))


class Programs(NamedTuple):
  """A config's model, optimizer and jitted programs on one mesh (``programs``)."""
  model: models.LooCModel
  tx: optax.GradientTransformation  # ``optimizer.create`` with the config's numbers
  schedule: optax.Schedule
  num_steps: int
  init: Callable[[jax.Array], TrainState]  # ``jit_init``
  train_step: Callable  # (state, batch, hp) -> (state, metrics): ``jit_train_step``
  step: Callable  # (state, batch) -> (state, metrics): ``train_step`` with the config's hp


# The config sections the model, optimizer, init and train step read. The seed reaches the
# init as its key argument; the data reach the step as its batch (shapes) and, through the
# hyperparameters, steps_per_epoch; the fields of ``optimizer.RUNTIME_FIELDS`` as its ``hp``.
PROGRAM_SECTIONS = ("augment", "model", "loss", "train")


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
  return Programs(model, tx, schedule, int(hp["total_steps"]), init, jitted,
                  bind_hyperparams(jitted, hp, mesh))


@functools.lru_cache(maxsize=4)
def _programs(sections_json: str, mesh):
  cfg = config_lib.from_json(json.loads(sections_json))
  model = models.build_model(cfg)
  tx, _ = optimizer.create(cfg)  # the optimizer state's structure
  return model, jit_init(cfg, model, tx, mesh), jit_train_step(cfg, model, mesh)


def abstract_state(cfg, model, tx, mesh, init=None) -> TrainState:
  """Shapes, dtypes and shardings of the state, without allocating it (for restores).

  ``init``: the config's ``jit_init`` when the caller has it (``programs(...).init``): its trace
  then serves both this and the run's first init.
  """
  init = init or jit_init(cfg, model, tx, mesh)
  return init.eval_shape(jax.eval_shape(jax.random.PRNGKey, cfg.seed))  # the key's shape only


def make_meta(cfg, step: int) -> dict:
  return {"config": json.loads(cfg.to_json()), "step": int(step), "data_position": int(step)}


class _Preemption:
  """One process: turns SIGTERM into a flag the loop checks after every step.

  With several processes (``jax.distributed``) it installs nothing: JAX's preemption sync
  manager owns SIGTERM there, and ``Checkpointer.reached_preemption`` tells every process at
  the same step. A Python handler would replace JAX's, and each process would stop on its own
  flag at a different step, leaving the others waiting in a collective.
  """

  def __init__(self, enabled: bool):
    self.enabled = enabled
    self.requested = False
    self._previous = None

  def __enter__(self):
    if self.enabled and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    logging.warning("Received signal %d: saving a checkpoint and exiting.", signum)
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str, *,
                       workdir_mode: str = "auto", stop_at: int | None = None) -> dict:
  """Pretrains (resuming from ``workdir`` when it holds a checkpoint); returns a summary.

  Args:
    cfg: the full config (``config.default_config()`` layout); validated here first.
    workdir: checkpoints, TensorBoard summaries and ``metrics-<step>.jsonl`` go here
      (``metrics_log.read_metrics`` reads them).
    workdir_mode: "auto" resumes a run with the same config and refuses a different one;
      "resume" continues whatever is there; "overwrite" moves an existing run aside.
    stop_at: stop (with a checkpoint) after this step, as if preempted; None runs to the end.

  Returns:
    The final step, per-space loss and top-1 averaged over the last logging interval,
    throughput, whether the run was preempted, and the final state.
  """
  # One process: from here on a SIGTERM stops the run after its next step, with a save.
  with _Preemption(enabled=jax.process_count() == 1) as preemption:
    return _train(cfg, workdir, workdir_mode, stop_at, preemption)


def _train(cfg, workdir: str, workdir_mode: str, stop_at: int | None,
           preemption: _Preemption) -> dict:
  mesh = make_mesh()
  config_lib.validate(cfg, num_devices=mesh.size)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  is_chief = jax.process_index() == 0
  names = space_names(cfg)

  source = data.create_train_source(cfg)
  compiled = programs(cfg, mesh, source.steps_per_epoch)
  model, tx, num_steps = compiled.model, compiled.tx, compiled.num_steps
  make_ckpt = lambda: checkpoints.Checkpointer(
      workdir, keep=cfg.keep_checkpoints, keep_every=cfg.keep_every_steps,
      keep_steps=(num_steps,), async_save=cfg.async_checkpoints)
  ckpt = make_ckpt()
  workdir_lib.prepare(workdir, workdir_mode, ckpt, cfg)
  if workdir_mode == "overwrite":
    ckpt = make_ckpt()
  restored = ckpt.restore_latest_good(abstract_state(cfg, model, tx, mesh, compiled.init))
  if restored is None:
    if is_chief and metrics_log.segment_paths(workdir):  # logs of a run that never saved
      workdir_lib.set_aside(workdir, None, "No checkpoint to resume from")
    state = compiled.init(jax.random.PRNGKey(cfg.seed))
    logging.info("Starting a new run in %s", workdir)
  else:
    state, meta = restored
    logging.info("Resumed from step %d in %s", meta["step"], workdir)

  step_fn = compiled.step
  data_sharding = NamedSharding(mesh, P(DATA_AXIS))
  # Process 0 writes TensorBoard summaries and the JSON lines, both on background threads;
  # every process prints the one-line progress below.
  writer = summaries.SummaryWriter(workdir, enabled=is_chief)
  jsonl = metrics_log.JsonlWriter(workdir, enabled=is_chief)

  def log(step, scalars):  # a step already logged before an interruption is not logged again
    if is_chief and jsonl.should_log(step):
      writer.write_scalars(step, scalars)
      jsonl.write(step, scalars)

  if is_chief and restored is None:
    writer.write_hparams(progress.flat_config(cfg))

  step = start_step = int(jax.device_get(state.step))
  end = num_steps if stop_at is None else min(num_steps, stop_at)
  history, last_scalars, preempted, profiling = [], {}, False, False
  interval_start, interval_images, compile_s = time.perf_counter(), 0, None
  # A background thread keeps the next batches decoded and placed on the devices.
  batches = prefetch.prefetch_to_device(source.iterate(step), data_sharding, size=2)
  try:
    while step < end:
      batch = next(batches)
      if cfg.profile_num_steps and step == cfg.profile_start_step and is_chief:
        jax.profiler.start_trace(workdir)
        profiling = True
      t0 = time.perf_counter()
      state, metrics = step_fn(state, batch)
      step += 1
      history.append(metrics)
      if compile_s is None:  # the first step includes compilation: keep it out of img/s
        jax.block_until_ready(metrics["loss"])
        compile_s = time.perf_counter() - t0
        interval_start, interval_images = time.perf_counter(), 0
      else:
        interval_images += cfg.train.batch_size
      if profiling and (step == cfg.profile_start_step + cfg.profile_num_steps or step == end):
        jax.block_until_ready(metrics["loss"])
        jax.profiler.stop_trace()
        profiling = False
        logging.info("Wrote a profile of steps %d-%d to %s/plugins/profile",
                     cfg.profile_start_step, step - 1, workdir)
      preempted = preemption.requested or ckpt.reached_preemption(step - start_step)
      if preempted and not preemption.requested:
        logging.warning("Preemption notice: all %d processes stop at step %d.",
                        jax.process_count(), step)
      if step % cfg.log_every_steps == 0 or step in (end, num_steps) or preempted:
        scalars = progress.average(history, names)
        history = []
        elapsed = time.perf_counter() - interval_start
        img_per_s = interval_images / elapsed if interval_images else 0.0
        eta = (num_steps - step) * cfg.train.batch_size / img_per_s if img_per_s else 0.0
        scalars.update(img_per_s=img_per_s, img_per_s_per_device=img_per_s / mesh.size,
                       epoch=step / source.steps_per_epoch,
                       data_skipped=float(getattr(source, "num_corrupt", 0)))
        if not last_scalars:
          scalars["compile_s"] = compile_s
        peak = (jax.local_devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
        if peak:  # GPU/TPU; the CPU backend keeps no statistics
          scalars["peak_memory_gib"] = peak / 2**30
        log(step, scalars)
        logging.info(progress.format_line(step, num_steps, source.steps_per_epoch, scalars,
                                          names, img_per_s, eta))
        last_scalars = scalars
        interval_start, interval_images = time.perf_counter(), 0
        progress.check_finite(cfg, scalars, step)
      if step % cfg.checkpoint_every_steps == 0 or step in (end, num_steps) or preempted:
        ckpt.save(step, state, make_meta(cfg, step), force=True)
      if cfg.eval_every_steps and (step % cfg.eval_every_steps == 0 or step == num_steps):
        monitored = _monitor(model, state, cfg)
        log(step, monitored)
        logging.info("step %d | online %s", step, ", ".join(
            f"{_MONITOR_NAMES.get(k, k)} {100 * v:.1f}%" for k, v in monitored.items()))
      if preempted:
        logging.warning("Stopped at step %d on a preemption request; run the same command "
                        "again to continue.", step)
        break
  finally:  # also when the loop raises: join the prefetch thread, commit pending saves
    batches.close()
    ckpt.close()
    writer.close()
    jsonl.flush()
  return {"step": step, "num_steps": num_steps, "spaces": names, "state": state,
          "preempted": preempted, **last_scalars}


_MONITOR_NAMES = {"eval/knn_top1": "kNN top-1", "eval/linear_top1": "linear top-1"}


def _monitor(model, state: TrainState, cfg) -> dict[str, float]:
  """``evaluate.online.monitor`` on this process's devices (no cross-process collective: every
  process computes the same values from its replica of the params)."""
  local = lambda tree: jax.tree.map(lambda x: x.addressable_data(0), tree)
  variables = {"params": local(state.params), "batch_stats": local(state.batch_stats)}
  return online.monitor(model, variables, cfg, mesh=make_mesh(jax.local_devices()))
