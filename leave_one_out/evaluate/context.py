"""What every evaluator reads: the configs, the frozen model, the two splits and their features."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
from etils import epath

from leave_one_out import extract
from leave_one_out.evaluate import dataset
from leave_one_out.evaluate import tables


class Context:
  """One evaluation run's shared state (built by ``leave_one_out.evaluate.run``).

  Attributes:
    c, cfg: the eval config and the pretraining config (from the checkpoint).
    model, variables, mesh: the frozen encoder, replicated over ``mesh``.
    kinds: feature kinds (the table's rows); spaces: the space names.
    data: the evaluated data section; train, test: ``dataset.Split``s.
    labels, primary: the evaluated labels and the primary one.
    model_size: S, the model's input side.
    shared: what an evaluator leaves for the others (e.g. the probe's classifiers).
    feature_seconds: time spent in ``features`` (reported on its own, not per evaluator).
  """

  def __init__(self, c, cfg, model, variables, mesh, kinds, out_dir=None):
    self.c, self.cfg = c, cfg
    self.model, self.variables, self.mesh = model, variables, mesh
    self.kinds = tuple(kinds)
    self.spaces = tables.space_names(cfg)
    self.model_size = int(cfg.augment.image_size)
    self.data, _ = dataset.data_section(c, cfg)
    self.train, self.test, self.labels, self.primary = dataset.load(c, cfg)
    self.out_dir = out_dir
    self.shared: dict = {}
    self.feature_seconds = 0.0
    self._features: dict = {}
    self._crop_source = None

  def featurize(self, images) -> dict:
    """{kind: float32 [N, F]} of images at the model's input size (``extract_feature_dict``)."""
    return extract.extract_feature_dict(
      self.model, self.variables, images, self.kinds, batch_size=self.c.batch_size, mesh=self.mesh
    )

  def features(self, which: str) -> dict:
    """{kind: float32 [N, F]} of the "train" or "test" split (centre crops), computed once."""
    if which not in self._features:
      t0 = time.perf_counter()
      split = self.train if which == "train" else self.test
      self._features[which] = self.featurize(split.model_input)
      self.feature_seconds += time.perf_counter() - t0
    return self._features[which]

  def dims(self) -> dict[str, int]:
    """{kind: F}, without running the model."""
    s = self.model_size
    shapes = jax.eval_shape(
      lambda v, x: extract.batch_features(self.model, v, x, self.kinds),
      self.variables,
      jax.ShapeDtypeStruct((1, s, s, 3), jnp.float32),
    )
    return {kind: int(shape.shape[1]) for kind, shape in shapes.items()}

  def crop_source(self):
    """The training split as stored squares for the MoCo protocol (``dataset.crop_source``)."""
    if self._crop_source is None:
      self._crop_source = dataset.crop_source(
        self.c, self.cfg, self.train, self.labels, image_size=self.c.probe.train_image_size
      )
    return self._crop_source

  def output_path(self, name: str) -> str | None:
    """``<workdir>/<name>`` where results are written (process 0, a workdir), else None."""
    if self.out_dir is None or jax.process_index() != 0:
      return None
    return str(epath.Path(self.out_dir) / name)
