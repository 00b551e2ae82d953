"""The pretraining loop: ``pretrain(cfg, workdir)`` runs or resumes a run in its workdir.

Around the train step (``leave_one_out.train.programs``): the training source and its device
prefetch, the workdir's rules (``workdir``), checkpoints every ``checkpoint_every_steps`` and at
a preemption (``checkpoints``), the run's logs and progress line (``logs``) and online
monitoring every ``eval_every_steps`` (``monitor``). A SIGTERM (one process) or JAX's
preemption notice (several) stops the run after its next step, with a save.
"""

from __future__ import annotations

import signal
import threading
import time

import jax
import ml_collections
from absl import logging
from etils import epath
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import config as config_lib
from leave_one_out import data
from leave_one_out import train
from leave_one_out.data.pipeline import prefetch
from leave_one_out.run import checkpoints
from leave_one_out.run import logs
from leave_one_out.run import monitor
from leave_one_out.run import warm_start
from leave_one_out.run import workdir as workdir_lib
from leave_one_out.sharding import DATA_AXIS
from leave_one_out.sharding import make_mesh


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


def pretrain(
  cfg: ml_collections.ConfigDict,
  workdir: str,
  *,
  workdir_mode: str = "auto",
  stop_at: int | None = None,
) -> dict:
  """Pretrains (resuming from ``workdir`` when it holds a checkpoint); returns a summary.

  Args:
    cfg: the full config (``config.default_config()`` layout); validated here first.
    workdir: checkpoints, TensorBoard summaries and ``metrics-<step>.jsonl`` go here
      (``logs.read_metrics`` reads them).
    workdir_mode: "auto" resumes a run with the same config and refuses a different one;
      "resume" continues whatever is there; "overwrite" moves an existing run aside.
    stop_at: stop (with a checkpoint) after this step, as if preempted; None runs to the end.

  Returns:
    The final step, per-space loss and top-1 averaged over the last logging interval,
    throughput, whether the run was preempted, and the final state.
  """
  # One process: from here on a SIGTERM stops the run after its next step, with a save.
  with _Preemption(enabled=jax.process_count() == 1) as preemption:
    return _pretrain(cfg, workdir, workdir_mode, stop_at, preemption)


def _pretrain(
  cfg, workdir: str, workdir_mode: str, stop_at: int | None, preemption: _Preemption
) -> dict:
  mesh = make_mesh()
  config_lib.validate(cfg, num_devices=mesh.size)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  is_chief = jax.process_index() == 0
  names = train.space_names(cfg)

  source = data.create_train_source(cfg)
  compiled = train.programs(cfg, mesh, source.steps_per_epoch)
  model, num_steps = compiled.model, compiled.num_steps
  make_ckpt = lambda: checkpoints.Checkpointer(
    workdir,
    keep=cfg.keep_checkpoints,
    keep_every=cfg.keep_every_steps,
    keep_steps=(num_steps,),
    async_save=cfg.async_checkpoints,
  )
  ckpt = make_ckpt()
  workdir_lib.prepare(workdir, workdir_mode, ckpt, cfg)
  if workdir_mode == "overwrite":
    ckpt = make_ckpt()
  restored = ckpt.restore_latest_good(compiled.abstract_state())
  if restored is None:
    if is_chief and logs.segment_paths(workdir):  # logs of a run that never saved
      workdir_lib.set_aside(workdir, None, "No checkpoint to resume from")
    state = warm_start.apply(compiled.new_state(cfg.seed), cfg)  # config.init_from
    logging.info("Starting a new run in %s", workdir)
  else:
    state, meta = restored
    logging.info("Resumed from step %d in %s", meta["step"], workdir)

  step_fn = compiled.step
  data_sharding = NamedSharding(mesh, P(DATA_AXIS))
  # Process 0 writes TensorBoard summaries and the JSON lines, both on background threads;
  # every process prints the one-line progress below.
  run_log = logs.RunLog(workdir, enabled=is_chief)
  if restored is None:
    run_log.write_config(cfg)

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
        logging.info(
          "Wrote a profile of steps %d-%d to %s/plugins/profile",
          cfg.profile_start_step,
          step - 1,
          workdir,
        )
      preempted = preemption.requested or ckpt.reached_preemption(step - start_step)
      if preempted and not preemption.requested:
        logging.warning(
          "Preemption notice: all %d processes stop at step %d.", jax.process_count(), step
        )
      if step % cfg.log_every_steps == 0 or step in (end, num_steps) or preempted:
        scalars = logs.average(history, names)
        history = []
        elapsed = time.perf_counter() - interval_start
        img_per_s = interval_images / elapsed if interval_images else 0.0
        eta = (num_steps - step) * cfg.train.batch_size / img_per_s if img_per_s else 0.0
        scalars.update(
          img_per_s=img_per_s,
          img_per_s_per_device=img_per_s / mesh.size,
          epoch=step / source.steps_per_epoch,
          data_skipped=float(getattr(source, "num_corrupt", 0)),
        )
        if not last_scalars:
          scalars["compile_s"] = compile_s
        peak = (jax.local_devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
        if peak:  # GPU/TPU; the CPU backend keeps no statistics
          scalars["peak_memory_gib"] = peak / 2**30
        run_log.write(step, scalars)
        logging.info(
          logs.format_line(step, num_steps, source.steps_per_epoch, scalars, names, img_per_s, eta)
        )
        last_scalars = scalars
        interval_start, interval_images = time.perf_counter(), 0
        logs.check_finite(cfg, scalars, step)
      if step % cfg.checkpoint_every_steps == 0 or step in (end, num_steps) or preempted:
        ckpt.save(step, state, checkpoints.meta_record(cfg, step), force=True)
      if cfg.eval_every_steps and (step % cfg.eval_every_steps == 0 or step == num_steps):
        monitored = _monitor(model, state, cfg)
        run_log.write(step, monitored)
        logging.info(
          "step %d | online %s",
          step,
          ", ".join(f"{_MONITOR_NAMES.get(k, k)} {100 * v:.1f}%" for k, v in monitored.items()),
        )
      if preempted:
        logging.warning(
          "Stopped at step %d on a preemption request; run the same command again to continue.",
          step,
        )
        break
  finally:  # also when the loop raises: join the prefetch thread, commit pending saves
    batches.close()
    ckpt.close()
    run_log.close()
  return {
    "step": step,
    "num_steps": num_steps,
    "spaces": names,
    "state": state,
    "preempted": preempted,
    **last_scalars,
  }


_MONITOR_NAMES = {"eval/knn_top1": "kNN top-1", "eval/linear_top1": "linear top-1"}


def _monitor(model, state: train.TrainState, cfg) -> dict[str, float]:
  """``monitor.monitor`` on this process's devices (no cross-process collective: every
  process computes the same values from its replica of the params)."""
  local = lambda tree: jax.tree.map(lambda x: x.addressable_data(0), tree)
  variables = {"params": local(state.params), "batch_stats": local(state.batch_stats)}
  return monitor.monitor(model, variables, cfg, mesh=make_mesh(jax.local_devices()))
