"""Rotation probe (``eval_config.rotation``): which of 0/90/180/270 degrees turned an image.

The paper's rotation task (docs/method.md, "Evaluation protocols"): a 4-way linear classifier on the
frozen features of every image at each of the four quarter turns, trained on the training split
and tested on the test split (both whole by default), with the linear probe's protocol
(``probe.protocol``):

* fast: features of every training image at the four turns, ``probes.linear_probe``; the part
  held out to choose the L2 strength is drawn by source image, so all four turns of an image
  fall on the same side.
* moco: ``moco_linear.train_heads(rotate=True)``: every epoch, every training image at every
  turn, each a fresh random-resized crop (+ flip) turned after cropping; the same settings as the
  label probe. Test: the centre crop of every test image at the four turns.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from leave_one_out import fields
from leave_one_out.evaluate import probe
from leave_one_out.evaluate import tables
from leave_one_out.evaluate.lib import moco_linear

CHANCE = {"rotation": 0.25}


def default_config() -> ml_collections.ConfigDict:
  r = ml_collections.ConfigDict()
  r.enabled = True
  r.num_train = 0  # training images, each at the 4 turns; 0 = the whole training split
  r.num_test = 0  # test images, each at the 4 turns; 0 = the whole test split
  return r


def validate(c: ml_collections.ConfigDict) -> None:
  check = fields.Section(c, "eval_config")
  check.boolean("rotation.enabled")
  check.size_or_all("rotation.num_train", 2)
  check.size_or_all("rotation.num_test", 1)


def rotations(images: np.ndarray, k: int) -> np.ndarray:
  """`[N, S, S, 3]` turned k quarter turns counter-clockwise (a view, no copy)."""
  return np.rot90(images, k, axes=(1, 2))


def rotated_features(
  featurize, images: np.ndarray, unrotated=None
) -> tuple[dict, np.ndarray, np.ndarray]:
  """Features of every image at k = 0..3: ({kind: [4N, F]}, k [4N], source image [4N]).

  ``unrotated``: the features of ``images`` as they are, when already computed.
  """
  parts = [unrotated or featurize(images)] + [featurize(rotations(images, k)) for k in range(1, 4)]
  feats = {kind: np.concatenate([p[kind] for p in parts]) for kind in parts[0]}
  n = len(images)
  return feats, np.repeat(np.arange(4, dtype=np.int32), n), np.tile(np.arange(n), 4)


def _take(n: int, total: int) -> int:
  return total if not n else min(n, total)


def evaluate(ctx) -> dict:
  """{kind: {"top1", "top5", "protocol", "num_train", "num_test", ...}}."""
  p = ctx.c.probe
  n_train = _take(ctx.c.rotation.num_train, len(ctx.train))
  n_test = _take(ctx.c.rotation.num_test, len(ctx.test))
  whole = lambda which, n, split: ctx.features(which) if n == len(split) else None
  f_test, y_test, _ = rotated_features(
    ctx.featurize, ctx.test.model_input[:n_test], whole("test", n_test, ctx.test)
  )
  sizes = {"num_train": 4 * n_train, "num_test": 4 * n_test}
  setting = probe.settings(p)
  out = {}
  if p.protocol == "fast":
    f_train, y_train, groups = rotated_features(
      ctx.featurize, ctx.train.model_input[:n_train], whole("train", n_train, ctx.train)
    )
    for kind in ctx.kinds:
      r = probe.fast(
        p, f_train[kind], y_train, f_test[kind], y_test, 4, seed=ctx.c.seed, groups=groups
      )
      out[kind] = {
        **{k: v for k, v in r.items() if k != "classifier"},
        **sizes,
        "protocol": setting,
      }
    return out
  trained = moco_linear.train_heads(
    ctx.model,
    ctx.variables,
    ctx.crop_source()[:n_train],
    {},
    {},
    ctx.kinds,
    p,
    image_size=ctx.model_size,
    rotate=True,
    seed=ctx.c.seed,
    mesh=ctx.mesh,
  )
  for kind in ctx.kinds:
    r = probe.moco_result(
      trained["heads"][kind][moco_linear.ROTATION],
      f_test[kind],
      y_test,
      trained,
      moco_linear.ROTATION,
      kind,
    )
    out[kind] = {**{k: v for k, v in r.items() if k != "classifier"}, **sizes, "protocol": setting}
  return out


def columns(results: dict) -> list:
  return [("rotation", lambda r: tables.pct(r.get("rotation", {}).get("top1")))]


def notes(results: dict) -> list[str]:
  r = results["rows"][results["kinds"][0]].get("rotation") if results["kinds"] else None
  if not r or "num_train" not in r:
    return []
  return [
    f"rotation: {r['num_train'] // 4} train / {r['num_test'] // 4} test images, each at "
    "0/90/180/270 degrees; the linear probe's protocol"
  ]
