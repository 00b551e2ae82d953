"""Weighted kNN (``eval_config.knn``): the training split is the bank (InstDisc / MoCo monitor).

Each of the k most cosine-similar training features votes for its class with weight
exp(similarity / temperature) (``classifiers.knn_probe``); top-1 / top-5 on the test split, per label.
"""

from __future__ import annotations

import ml_collections

from leave_one_out import fields
from leave_one_out.evaluate import tables
from leave_one_out.evaluate.lib import classifiers

K = 20  # InstDisc's k and temperature, also the online monitor's
TEMPERATURE = 0.07


def default_config() -> ml_collections.ConfigDict:
  k = ml_collections.ConfigDict()
  k.enabled = True
  k.k = K  # neighbours that vote
  k.temperature = TEMPERATURE  # vote weight exp(cos / temperature)
  return k


def validate(c: ml_collections.ConfigDict) -> None:
  check = fields.Section(c, "eval_config")
  check.boolean("knn.enabled")
  check.integer("knn.k", 1)
  check.number("knn.temperature", 0, low_open=True)


def evaluate(ctx) -> dict:
  """{kind: {label: {"top1", "top5"}}}."""
  f_train, f_test = ctx.features("train"), ctx.features("test")
  return {
    kind: {
      label: classifiers.knn_probe(
        f_train[kind],
        ctx.train.labels[label],
        f_test[kind],
        ctx.test.labels[label],
        ctx.train.num_classes[label],
        k=ctx.c.knn.k,
        temperature=ctx.c.knn.temperature,
      )
      for label in ctx.labels
    }
    for kind in ctx.kinds
  }


def columns(results: dict) -> list:
  primary = results["dataset"]["primary_label"]
  single = len(results["dataset"]["labels"]) == 1
  return [
    (
      "kNN" if single else f"kNN {primary}",
      lambda r: tables.pct(r.get("knn", {}).get(primary, {}).get("top1")),
    )
  ]


def notes(results: dict) -> list[str]:
  del results
  return []
