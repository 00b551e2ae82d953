"""The pretraining loop: ``pretrain(cfg, workdir)`` runs or resumes a run in its workdir.

Around the train step (``leave_one_out.train.programs``): the training source and its device
prefetch, the workdir's rules (``workdir``), checkpoints every ``checkpoint_every_steps`` and at
a preemption (``checkpoints``), the run's logs and progress line (``logs``) and online
monitoring every ``eval_every_steps`` (``monitor``). ``check`` is what a run verifies before
its first step (config, data, monitoring splits, workdir), also on its own
(``main --validate_only``).

Stopping: SIGTERM and SIGINT (Ctrl-C) stop the run after its next step, with a save, and the
process exits 0; a second SIGINT kills it at once (the last committed checkpoint stays good).
One process handles both signals itself; with several (``jax.distributed``) a SIGTERM goes to
JAX's preemption sync manager, which stops every process at the same step, and a SIGINT is
turned into a SIGTERM to the same process so that it takes that path too.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
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
  """Turns SIGTERM and SIGINT into a stop after the next step, with a save.

  One process: both signals set a flag the loop checks after every step. Several processes
  (``jax.distributed``): JAX's preemption sync manager owns SIGTERM, and
  ``Checkpointer.reached_preemption`` tells every process at the same step; a Python SIGTERM
  handler would replace JAX's, and each process would stop on its own flag at a different step,
  leaving the others waiting in a collective. So only SIGINT is handled there, by sending this
  process a SIGTERM. Either way the first SIGINT restores the default action: a second Ctrl-C
  kills the process at once.
  """

  def __init__(self, one_process: bool):
    self.one_process = one_process
    self.requested = False
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      names = (signal.SIGTERM, signal.SIGINT) if self.one_process else (signal.SIGINT,)
      for signum in names:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if signum == signal.SIGINT:
      signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C: the default, at once
      logging.warning(
        "Interrupted (Ctrl-C): saving a checkpoint after this step, then exiting; press "
        "Ctrl-C again to abort at once without a save."
      )
      if not self.one_process:
        os.kill(os.getpid(), signal.SIGTERM)  # JAX's preemption sync: every process stops
        return
    else:
      logging.warning("Received SIGTERM: saving a checkpoint after this step, then exiting.")
    self.requested = True

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)


# Unreadable images in a batch (its "valid" mask), added to a running total on the devices:
# the count covers the steps taken, over every host, without a transfer per step.
_count_skipped = jax.jit(lambda total, valid: total + jnp.sum(~valid, dtype=jnp.int32))


def check(cfg, workdir: str | None = None, workdir_mode: str = "auto") -> list[str]:
  """What a run verifies before its first step, without training: the config (every field,
  against this machine's device count), the training data (listed or opened), the splits
  online monitoring reads, and (``workdir``) whether the workdir's run would be resumed or
  refused. Raises the error the run would stop with; returns one line per check."""
  mesh = make_mesh()
  config_lib.validate(cfg, num_devices=mesh.size)
  lines = [f"config: valid for {mesh.size} {jax.devices()[0].platform} device(s)"]
  source = data.create_train_source(cfg)
  lines.append(f"training data: {source!r}")
  monitor.check(cfg)
  if cfg.eval_every_steps:
    lines.append(f"online monitoring every {cfg.eval_every_steps} steps: {data.describe(cfg.data)}")
  if workdir:
    if not epath.Path(workdir, checkpoints.CHECKPOINT_DIR).exists():
      lines.append(f"workdir: {workdir} holds no run; a new one would start")
    else:
      ckpt = checkpoints.Checkpointer(workdir, async_save=False)
      try:
        found = workdir_lib.saved_differences(ckpt, cfg)
      finally:
        ckpt.close()
      if found is None:
        lines.append(f"workdir: {workdir} holds no readable checkpoint; a new run would start")
      elif found[1] and workdir_mode == "auto":
        raise workdir_lib.refusal(workdir, *found)
      else:
        lines.append(f"workdir: {workdir} holds a run at step {found[0]}; it would resume")
  return lines


def pretrain(
  cfg: ml_collections.ConfigDict,
  workdir: str,
  *,
  workdir_mode: str = "auto",
  stop_at: int | None = None,
  wandb: dict | None = None,
) -> dict:
  """Pretrains (resuming from ``workdir`` when it holds a checkpoint); returns a summary.

  Args:
    cfg: the full config (``config.default_config()`` layout); validated here first.
    workdir: checkpoints, TensorBoard summaries and ``metrics-<step>.jsonl`` go here
      (``logs.read_metrics`` reads them).
    workdir_mode: "auto" resumes a run with the same config and refuses a different one;
      "resume" continues whatever is there; "overwrite" moves an existing run aside.
    stop_at: stop (with a checkpoint) after this step, as if preempted; None runs to the end.
    wandb: log every logged step to Weights & Biases too (process 0): ``logs.WandbLogger``'s
      keyword arguments ({"project": ..., "entity": ...}); None: no.

  Returns:
    The final step, per-space loss and top-1 averaged over the last logging interval,
    throughput, whether the run was preempted, and the final state; "finished_before" when
    the workdir's run had already reached its last step (nothing trained; the last logged
    interval's values).
  """
  # From here on a SIGTERM or SIGINT stops the run after its next step, with a save.
  with _Preemption(one_process=jax.process_count() == 1) as preemption:
    return _pretrain(cfg, workdir, workdir_mode, stop_at, preemption, wandb)


def _pretrain(
  cfg, workdir: str, workdir_mode: str, stop_at: int | None, preemption: _Preemption, wandb
) -> dict:
  mesh = make_mesh()
  config_lib.validate(cfg, num_devices=mesh.size)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  is_chief = jax.process_index() == 0
  names = train.space_names(cfg)

  source = data.create_train_source(cfg)
  monitor.check(cfg)  # the splits monitoring reads: now, not at its first step
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
  skipped = 0  # unreadable images skipped over the whole run (kept in the checkpoint's meta)
  if restored is None:
    if is_chief and logs.segment_paths(workdir):  # logs of a run that never saved
      workdir_lib.set_aside(workdir, None, "No checkpoint to resume from")
    state = warm_start.apply(compiled.new_state(cfg.seed), cfg)  # config.init_from
    logging.info("Starting a new run in %s", workdir)
  else:
    state, meta = restored
    skipped = int(meta.get("data_skipped", 0))  # runs saved before the count: from 0
    logging.info("Resumed from step %d in %s", meta["step"], workdir)

  step = start_step = int(jax.device_get(state.step))
  if step >= num_steps:  # nothing to train: no event file, no metrics, no checkpoint
    ckpt.close()
    logging.info(
      "The run in %s is finished (step %d/%d): nothing to train. Another --workdir (or "
      "--workdir_mode=overwrite) starts a new run; a longer config.train.num_steps or "
      "num_epochs with --workdir_mode=resume continues this one.",
      workdir,
      step,
      num_steps,
    )
    last = [r for r in logs.read_metrics(workdir) if "loss" in r] if is_chief else []
    summary = {k: v for k, v in (last[-1] if last else {}).items() if k != "step"}
    return {
      **summary,
      "step": step,
      "num_steps": num_steps,
      "spaces": names,
      "state": state,
      "preempted": False,
      "finished_before": True,
    }
  workdir_lib.write_config(workdir, cfg)
  step_fn = compiled.step
  data_sharding = NamedSharding(mesh, P(DATA_AXIS))
  # Process 0 writes TensorBoard summaries and the JSON lines, both on background threads;
  # every process prints the one-line progress below.
  extra = [logs.WandbLogger(cfg, workdir, **wandb)] if wandb and is_chief else []
  run_log = logs.RunLog(workdir, enabled=is_chief, extra=extra)
  if restored is None:
    run_log.write_config(cfg)

  end = num_steps if stop_at is None else min(num_steps, stop_at)
  history, last_scalars, preempted, profiling = [], {}, False, False
  interval_start, interval_images, compile_s = time.perf_counter(), 0, None
  skipped_total = skipped  # a device scalar once the first batch is counted
  logging.info(logs.legend(names))
  # A background thread keeps the next batches decoded and placed on the devices.
  batches = prefetch.prefetch_to_device(source.iterate(step), data_sharding, size=2)
  try:
    while step < end:
      batch = next(batches)
      if "valid" in batch:
        skipped_total = _count_skipped(skipped_total, batch["valid"])
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
          data_skipped=float(skipped_total),  # images skipped so far in this run
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
        meta = {**checkpoints.meta_record(cfg, step), "data_skipped": int(skipped_total)}
        ckpt.save(step, state, meta, force=True)
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
