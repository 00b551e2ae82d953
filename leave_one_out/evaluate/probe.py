"""Linear probe per label (``eval_config.probe``), with one of two protocols.

* "moco": MoCo's linear classification protocol (``moco_linear``): SGD (lr 30, momentum 0.9, no
  weight decay, batch 256, 100 epochs, x0.1 at 60 and 80) on a linear layer over the frozen
  encoder, random-resized crop + flip of the training images every epoch on device, centre crop
  at test. What the paper's numbers use; the default of configs/eval/tfds.py and folder.py.
* "fast": softmax regression on cached centre-crop features (``classifiers.linear_probe``:
  standardised features, full-batch Adam, the L2 strength chosen on a held-out part of the
  training split). Seconds on a CPU; the default for the in-memory datasets and the demo.

The same recipe serves the rotation probe (``rotation``) and gives the classifier that the
corruption protocols (``corruption``, ``imagenet_c``) apply to corrupted images (``classifiers``).
Results per kind and label: top1, top5 and the protocol with its settings.
"""

from __future__ import annotations

import ml_collections

from leave_one_out import fields
from leave_one_out.evaluate import tables
from leave_one_out.evaluate.lib import classifiers
from leave_one_out.evaluate.lib import moco_linear

PROTOCOLS = ("fast", "moco")


def default_config() -> ml_collections.ConfigDict:
  p = ml_collections.ConfigDict()
  p.enabled = True
  p.protocol = "fast"  # fast (cached features, seconds) | moco (MoCo's protocol, on device)
  # fast: softmax regression on cached centre-crop features.
  p.steps = 300  # fast: full-batch Adam iterations
  p.lr = 0.05  # fast: Adam learning rate
  p.l2_grid = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)  # fast: L2 strengths tried (one vmapped fit)
  p.val_fraction = 0.2  # fast: share of the training split held out to choose the L2 strength
  p.normalize = "standardize"  # fast: standardize | l2 | none (statistics of the fitting set)
  # moco: MoCo's linear classification protocol (moco_linear).
  p.epochs = 100  # moco: passes over the training split (MoCo: 100; some reproductions: 200)
  p.sgd_lr = 30.0  # moco: initial SGD learning rate (MoCo v2: 30; not scaled with the batch)
  p.momentum = 0.9  # moco: SGD momentum
  p.weight_decay = 0.0  # moco: L2 weight decay
  p.batch_size = 256  # moco: global batch, rounded up to a multiple of the device count
  p.decay_epochs = ()  # moco: the learning rate is multiplied by decay_factor from these epochs
  #                      on, each below epochs; () = MoCo's 60% and 80% of epochs (60 and 80 of
  #                      100, 6 and 8 of a 10-epoch probe)
  p.decay_factor = 0.1  # moco
  p.crop_scale = (0.08, 1.0)  # moco: random-resized crop area range (torchvision's default)
  p.crop_ratio = (3 / 4, 4 / 3)  # moco: crop aspect-ratio range (torchvision's default)
  p.flip = True  # moco: random horizontal flip of the training crops
  p.train_image_size = 0  # moco: side of the stored training squares the crops are cut from;
  #                         0 = S / dataset.data.eval_crop_fraction (256 for S = 224)
  return p


def validate(c: ml_collections.ConfigDict) -> None:
  check = fields.Section(c, "eval_config")
  p = c.probe
  check.boolean("probe.enabled")
  check.one_of("probe.protocol", PROTOCOLS)
  check.integer("probe.steps", 1)
  check.number("probe.lr", 0, low_open=True)
  if not p.l2_grid or not all(fields.is_number(v) and v >= 0 for v in p.l2_grid):
    check.fail("probe.l2_grid", f"must be a non-empty tuple of values >= 0, got {p.l2_grid!r}")
  check.number("probe.val_fraction", 0.0, 1.0, high_open=True)
  check.one_of("probe.normalize", classifiers.NORMALIZATIONS)
  check.integer("probe.epochs", 1)
  check.number("probe.sgd_lr", 0, low_open=True)
  check.number("probe.momentum", 0.0, 1.0, high_open=True)
  check.number("probe.weight_decay", 0.0)
  check.integer("probe.batch_size", 1)
  epochs = tuple(p.decay_epochs)
  if not all(fields.is_int(e) and e > 0 for e in epochs) or list(epochs) != sorted(set(epochs)):
    check.fail("probe.decay_epochs", f"must be increasing ints > 0, got {p.decay_epochs!r}")
  if epochs and fields.is_int(p.epochs) and epochs[-1] >= p.epochs:
    check.fail(
      "probe.decay_epochs",
      f"must be below probe.epochs ({p.epochs}): the rate would never decay at "
      f"{[e for e in epochs if e >= p.epochs]}; got {p.decay_epochs!r} (() = MoCo's 60% and "
      "80% of the epochs)",
    )
  check.number("probe.decay_factor", 0.0, 1.0, low_open=True)
  check.number_range("probe.crop_scale", 0.0, 1.0, low_open=True)
  check.number_range("probe.crop_ratio", 0.0, low_open=True)
  check.boolean("probe.flip")
  check.integer("probe.train_image_size", 0)


def settings(p) -> dict:
  """The protocol and its settings, recorded with every number it produced."""
  if p.protocol == "moco":
    return moco_linear.settings(p)
  return {
    "name": "fast",
    "optimizer": "adam (full batch)",
    "steps": int(p.steps),
    "lr": float(p.lr),
    "l2_grid": list(p.l2_grid),
    "val_fraction": float(p.val_fraction),
    "normalize": p.normalize,
    "train_views": "centre crop (cached features)",
    "test_views": "centre crop",
  }


def fast(
  p, train_x, train_y, test_x, test_y, num_classes: int, *, seed: int = 0, groups=None
) -> dict:
  """The fast protocol on features: ``classifiers.linear_probe`` with the section's settings."""
  return classifiers.linear_probe(
    train_x,
    train_y,
    test_x,
    test_y,
    num_classes,
    l2_grid=tuple(p.l2_grid),
    val_fraction=p.val_fraction,
    steps=p.steps,
    lr=p.lr,
    normalize_mode=p.normalize,
    seed=seed,
    groups=groups,
  )


def moco_result(head: dict, test_x, test_y, trained: dict, task: str, kind: str) -> dict:
  """Test accuracy of one layer trained by ``moco_linear.train_heads``, and its classifier."""
  scores = moco_linear.logits(head, test_x)
  return {
    "top1": classifiers.topk_accuracy(scores, test_y, 1),
    "top5": classifiers.topk_accuracy(scores, test_y, 5),
    "train_loss": trained["loss"][f"{kind}/{task}"][-1],
    "diverged": bool(trained["diverged"][f"{kind}/{task}"]),
    "epoch_seconds": trained["epoch_seconds"],
    "classifier": {"norm": {"mode": "none"}, "w": head["w"], "b": head["b"]},
  }


TOP5_ABOVE = 5  # top-5 is reported for more classes than this only (else it is 100%)


def fit(ctx, labels) -> dict:
  """{kind: {label: result with "classifier"}} with the configured protocol; "top5" is None
  for a label of at most ``TOP5_ABOVE`` classes."""
  out = _fit(ctx, labels)
  for per_label in out.values():
    for label, r in per_label.items():
      if ctx.train.num_classes[label] <= TOP5_ABOVE:
        r["top5"] = None
  return out


def _fit(ctx, labels) -> dict:
  p = ctx.c.probe
  f_train, f_test = ctx.features("train"), ctx.features("test")
  out = {kind: {} for kind in ctx.kinds}
  if p.protocol == "fast":
    for kind in ctx.kinds:
      for label in labels:
        out[kind][label] = fast(
          p,
          f_train[kind],
          ctx.train.labels[label],
          f_test[kind],
          ctx.test.labels[label],
          ctx.train.num_classes[label],
          seed=ctx.c.seed,
        )
    return out
  trained = moco_linear.train_heads(
    ctx.model,
    ctx.variables,
    ctx.crop_source(),
    {l: ctx.train.labels[l] for l in labels},
    {l: ctx.train.num_classes[l] for l in labels},
    ctx.kinds,
    p,
    image_size=ctx.model_size,
    seed=ctx.c.seed,
    mesh=ctx.mesh,
  )
  for kind in ctx.kinds:
    for label in labels:
      out[kind][label] = moco_result(
        trained["heads"][kind][label], f_test[kind], ctx.test.labels[label], trained, label, kind
      )
  return out


def primary_classifiers(ctx) -> dict:
  """{kind: the primary label's classifier} (``classifiers.classify``), fitted once per run."""
  if "probe" not in ctx.shared:
    ctx.shared["probe"] = fit(ctx, (ctx.primary,))
  return {kind: r[ctx.primary]["classifier"] for kind, r in ctx.shared["probe"].items()}


def evaluate(ctx) -> dict:
  """{kind: {label: {"top1", "top5", "protocol", ...}}} for every evaluated label."""
  ctx.shared["probe"] = fit(ctx, ctx.labels)
  setting = settings(ctx.c.probe)
  return {
    kind: {
      label: {**{k: v for k, v in r.items() if k != "classifier"}, "protocol": setting}
      for label, r in per_label.items()
    }
    for kind, per_label in ctx.shared["probe"].items()
  }


def columns(results: dict) -> list:
  """Single-label datasets: top-1 (and top-5 above 5 classes); several labels: top-1 of each."""
  first = results["rows"][results["kinds"][0]].get("probe", {}) if results["kinds"] else {}
  labels = [l for l in results["dataset"]["labels"] if l in first]
  single = len(results["dataset"]["labels"]) == 1
  cols = []
  for label in labels:
    classes = results["dataset"].get("num_classes", {}).get(label, TOP5_ABOVE + 1)
    for top in ("top1", "top5") if single and classes > TOP5_ABOVE else ("top1",):
      title = f"{top[:3]}-{top[3]}" if single else label
      cols.append(
        (title, lambda r, l=label, t=top: tables.pct(r.get("probe", {}).get(l, {}).get(t)))
      )
  return cols


def describe(setting: dict) -> str:
  """One line for the table."""
  if setting["name"] == "moco":
    decays = [e for e in setting["decay_epochs"] if e < setting["epochs"]]
    return (
      f"moco (SGD lr {setting['lr']:g}, momentum {setting['momentum']:g}, weight decay "
      f"{setting['weight_decay']:g}, batch {setting['batch_size']}, {setting['epochs']} "
      f"epochs{', x' + format(setting['decay_factor'], 'g') + ' at ' if decays else ''}"
      f"{', '.join(map(str, decays))}; random-resized crop + flip on device, frozen "
      "encoder, centre crop at test)"
    )
  return (
    f"fast (full-batch Adam, {setting['steps']} steps, lr {setting['lr']:g}, L2 from "
    f"{len(setting['l2_grid'])} values on {100 * setting['val_fraction']:g}% held out; "
    f"{setting['normalize']} centre-crop features)"
  )


def notes(results: dict) -> list[str]:
  first = results["rows"][results["kinds"][0]].get("probe", {}) if results["kinds"] else {}
  r = next(iter(first.values()), None)
  if not r:
    return []
  lines = [f"linear probe: {describe(r['protocol'])}"]
  labels = results.get("kind_labels", {})
  bad = [
    f"{labels.get(kind, kind)} / {label}"
    for kind, row in results["rows"].items()
    for label, v in row.get("probe", {}).items()
    if v.get("diverged")
  ]
  if bad:
    lines.append(
      f"linear probe: DIVERGED for {', '.join(bad)} (the training loss went up or is "
      "non-finite; those cells are not trustworthy); lower probe.sgd_lr"
    )
  return lines
