"""Online monitoring during pretraining (``config.online``, every ``config.eval_every_steps``).

``monitor`` measures the downstream feature (LooC++'s concatenation, else the backbone's V) of
the model being trained on the run's own data, ``config.data``, read through the same input
pipeline as evaluation (``leave_one_out.data.create_eval_source``): kNN top-1 (k = 20,
temperature 0.07) with ``num_train`` images of ``train_split`` as the bank and ``num_test``
images of ``eval_split`` as queries, and optionally a fast linear probe on the same features.
Where both name the same split, the queries are the ``num_test`` images that follow the bank in
the split's fixed order: a held-out slice, for data without a labelled evaluation split. The
embedded dataset is used only when the run trains on it.

This module is light (no jax or TensorFlow at import; ``monitor`` imports what it needs), since
``leave_one_out.config`` assembles ``config.online`` from ``default_config``.
"""

from __future__ import annotations

import ml_collections

# Fields a resumed run may change (train.RESUMABLE_FIELDS): monitoring is not the run. "online"
# itself: a run saved before the section existed resumes.
RESUMABLE_FIELDS = ("online", "online.train_split", "online.eval_split", "online.num_train",
                    "online.num_test", "online.linear_probe")


def default_config() -> ml_collections.ConfigDict:
  o = ml_collections.ConfigDict()
  o.train_split = ""  # the kNN bank (and probe training set): a split of config.data;
  #                     "" = data.train_split
  o.eval_split = ""  # the queries; "" = data.eval_split. The same split as train_split: the
  #                    num_test images after the bank in the split's fixed order (held out)
  o.num_train = 1000  # bank images
  o.num_test = 500  # query images
  o.linear_probe = False  # also a fast linear probe (eval/linear_top1), seconds more per call
  return o


def _fail(field: str, message: str):
  raise ValueError(f"config.online.{field} {message}")


def validate(o: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first bad field (``config.online.<field>``)."""
  for field in ("train_split", "eval_split"):
    if not isinstance(o[field], str):
      _fail(field, f"must be a split name or '' (the data section's), got {o[field]!r}")
  for field, low in (("num_train", 2), ("num_test", 1)):
    value = o[field]
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
      _fail(field, f"must be an int >= {low}, got {value!r}")
  if not isinstance(o.linear_probe, bool):
    _fail("linear_probe", f"must be True or False, got {o.linear_probe!r}")


def monitor(model, variables, cfg, *, mesh=None) -> dict[str, float]:
  """kNN (and linear-probe) top-1 of the downstream feature on the run's own data.

  Args:
    model: the model being trained (``models.build_model(cfg)``).
    variables: ``{"params": state.params, "batch_stats": state.batch_stats}`` (online encoder).
    cfg: the pretraining config (``config.data`` and ``config.online``).
    mesh: the training mesh; None = every device.

  Returns:
    {"eval/knn_top1": accuracy in [0, 1]} (+ "eval/linear_top1" with ``online.linear_probe``).
  """
  # Local: these import leave_one_out.config, which imports this module.
  from leave_one_out import data as data_lib  # pylint: disable=import-outside-toplevel
  from leave_one_out import extract  # pylint: disable=import-outside-toplevel
  from leave_one_out import probes  # pylint: disable=import-outside-toplevel
  from leave_one_out.evaluate import dataset  # pylint: disable=import-outside-toplevel
  from leave_one_out.evaluate import knn  # pylint: disable=import-outside-toplevel
  o, d = cfg.online, cfg.data
  bank_split = o.train_split or d.train_split
  query_split = o.eval_split or d.eval_split
  same = bank_split == query_split
  size = dataset.read_size(d, cfg.augment.image_size)
  read = lambda split, n: data_lib.create_eval_source(d, split, image_size=size,
                                                      num_examples=n, seed=cfg.seed)
  bank_source = read(bank_split, o.num_train + (o.num_test if same else 0))
  bank = bank_source.load()
  if same:
    queries = {k: v[o.num_train:] for k, v in bank.items()}
    bank = {k: v[:o.num_train] for k, v in bank.items()}
    if not len(queries["label"]):
      raise ValueError(f"config.online: {bank_split} holds only {len(bank['label'])} images, "
                       f"none left for queries after the bank (online.num_train)")
  else:
    queries = read(query_split, o.num_test).load()
  kind = "looc++" if model.looc_plus_plus else "backbone"
  feats = [extract.extract_features(model, variables, split["image"], kind,
                                       image_size=cfg.augment.image_size, mesh=mesh)
           for split in (bank, queries)]
  num_classes = bank_source.num_classes
  out = {"eval/knn_top1": probes.knn_probe(
      feats[0], bank["label"], feats[1], queries["label"], num_classes, k=knn.K,
      temperature=knn.TEMPERATURE)["top1"]}
  if o.linear_probe:
    out["eval/linear_top1"] = probes.linear_probe(feats[0], bank["label"], feats[1],
                                                  queries["label"], num_classes)["top1"]
  return out
