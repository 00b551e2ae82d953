"""Online monitoring during pretraining (``config.online``, every ``config.eval_every_steps``).

The section's fields and their checks are ``leave_one_out.config``'s (``online_config``).

``monitor`` measures the downstream feature (LooC++'s concatenation, else the backbone's V) of
the model being trained on the run's own data, ``config.data``, read through the same input
pipeline as evaluation (``leave_one_out.data.create_eval_source``): kNN top-1 (k = 20,
temperature 0.07) with ``num_train`` images of ``train_split`` as the bank and ``num_test``
images of ``eval_split`` as queries, and optionally a fast linear probe on the same features.
Where both name the same split, the queries are the ``num_test`` images that follow the bank in
the split's fixed order: a held-out slice, for data without a labelled evaluation split. The
embedded dataset is used only when the run trains on it. ``check`` opens both splits at
start-up (the loop calls it before the first step), so a missing or too small split is an error
then, not at the first monitoring step.
"""

from __future__ import annotations

from leave_one_out import data as data_lib
from leave_one_out import extract
from leave_one_out.evaluate import dataset
from leave_one_out.evaluate import knn
from leave_one_out.evaluate.lib import classifiers


def _splits(cfg):
  """(bank split, query split or None when the bank's split also holds the queries, the
  bank's source, the query source or None): the sources list or open their data, nothing is
  decoded."""
  o, d = cfg.online, cfg.data
  bank_split = o.train_split or d.train_split
  query_split = o.eval_split or d.eval_split
  same = bank_split == query_split
  size = dataset.read_size(d, cfg.augment.image_size)
  read = lambda split, n: data_lib.create_eval_source(
    d, split, image_size=size, num_examples=n, seed=cfg.seed
  )
  bank = read(bank_split, o.num_train + (o.num_test if same else 0))
  queries = None if same else read(query_split, o.num_test)
  return bank_split, query_split, bank, queries


def check(cfg) -> None:
  """DataError unless both splits monitoring reads exist and the bank's split leaves queries
  (with ``eval_every_steps`` > 0; the loop calls it at start-up)."""
  if not cfg.eval_every_steps:
    return
  o = cfg.online
  try:
    bank_split, _, bank, queries = _splits(cfg)
  except data_lib.DataError as e:
    raise data_lib.DataError(
      f"online monitoring (config.eval_every_steps={cfg.eval_every_steps}) reads "
      f"config.online.train_split / eval_split (default: config.data's): {e}"
    ) from e
  if queries is None and bank.num_examples <= o.num_train:
    raise data_lib.DataError(
      f"config.online: {bank_split} holds only {bank.num_examples} images, none left for "
      f"queries after the bank (online.num_train={o.num_train}); lower online.num_train"
    )


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
  o = cfg.online
  bank_split, _, bank_source, query_source = _splits(cfg)
  bank = bank_source.load()
  if query_source is None:
    queries = {k: v[o.num_train :] for k, v in bank.items()}
    bank = {k: v[: o.num_train] for k, v in bank.items()}
    if not len(queries["label"]):
      raise ValueError(
        f"config.online: {bank_split} holds only {len(bank['label'])} images, "
        f"none left for queries after the bank (online.num_train)"
      )
  else:
    queries = query_source.load()
  kind = "looc++" if model.looc_plus_plus else "backbone"
  feats = [
    extract.extract_features(
      model, variables, split["image"], kind, image_size=cfg.augment.image_size, mesh=mesh
    )
    for split in (bank, queries)
  ]
  num_classes = bank_source.num_classes
  out = {
    "eval/knn_top1": classifiers.knn_probe(
      feats[0],
      bank["label"],
      feats[1],
      queries["label"],
      num_classes,
      k=knn.K,
      temperature=knn.TEMPERATURE,
    )["top1"]
  }
  if o.linear_probe:
    out["eval/linear_top1"] = classifiers.linear_probe(
      feats[0], bank["label"], feats[1], queries["label"], num_classes
    )["top1"]
  return out
