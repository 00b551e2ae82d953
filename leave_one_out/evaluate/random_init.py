"""The same network at random init (``eval_config.random_init``): what pretraining added.

Random convolutions already carry information (position, colour, a global light), so a probe
accuracy alone does not say that a representation was learned. This evaluator builds the
evaluated network at its initialisation (the run's ``seed``, ``train.programs``' init), with
BatchNorm statistics calibrated on one training view of every image of the evaluation's training
split (``experiments.baselines.calibrate_batch_stats``: forward passes in train mode, no update),
and fits the "fast" linear probe of the primary label on the backbone feature of both networks,
the trained one and the initial one, with the same protocol and images. The table gets a line
with both accuracies and the gap. Off by default (it costs a calibration pass and the features
of both splits once more); the demo's end-of-run evaluation and configs/eval/digits.py turn it
on.
"""

from __future__ import annotations

import ml_collections

from leave_one_out import extract
from leave_one_out import fields
from leave_one_out.evaluate import probe
from leave_one_out.experiments import baselines

PER_KIND = False  # one result for the run, stored under results["random_init"]
KIND = "backbone"


def default_config() -> ml_collections.ConfigDict:
  r = ml_collections.ConfigDict()
  r.enabled = False
  return r


def validate(c: ml_collections.ConfigDict) -> None:
  fields.Section(c, "eval_config").boolean("random_init.enabled")


def _features(ctx, variables) -> dict:
  return {
    which: extract.extract_feature_dict(
      ctx.model,
      variables,
      split.model_input,
      (KIND,),
      batch_size=ctx.c.batch_size,
      mesh=ctx.mesh,
    )[KIND]
    for which, split in (("train", ctx.train), ("test", ctx.test))
  }


def evaluate(ctx) -> dict:
  """{"label", "kind", "trained", "init" (top-1 in [0, 1]), "calibration_images"}."""
  init = baselines.initial_variables(
    ctx.cfg, ctx.train.images, batch_size=ctx.c.batch_size, mesh=ctx.mesh
  )
  fast = ctx.c.probe.to_dict()
  fast["protocol"] = "fast"
  fast = ml_collections.ConfigDict(fast)
  label, out = ctx.primary, {"label": ctx.primary, "kind": KIND}
  trained = ctx.features("train") if KIND in ctx.kinds else None
  features = {
    "trained": (
      {"train": trained[KIND], "test": ctx.features("test")[KIND]}
      if trained
      else _features(ctx, ctx.variables)
    ),
    "init": _features(ctx, init),
  }
  for name, f in features.items():
    r = probe.fast(
      fast,
      f["train"],
      ctx.train.labels[label],
      f["test"],
      ctx.test.labels[label],
      ctx.train.num_classes[label],
      seed=ctx.c.seed,
    )
    out[name] = r["top1"]
  out["calibration_images"] = len(ctx.train)
  out["protocol"] = probe.settings(fast)
  return out


def columns(results: dict) -> list:
  del results
  return []


def notes(results: dict) -> list[str]:
  r = results.get("random_init")
  if not r:
    return []
  gap = 100 * (r["trained"] - r["init"])
  return [
    f"random init: {r['label']} {100 * r['init']:.1f}% for the same network untrained "
    f"(BatchNorm statistics calibrated on {r['calibration_images']} training views), "
    f"{100 * r['trained']:.1f}% trained: {gap:+.1f} points (fast linear probe, {r['kind']})"
  ]
