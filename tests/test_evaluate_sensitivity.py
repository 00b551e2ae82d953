"""The sensitivity evaluator on a parameter-free model whose invariances are known."""

import os

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from leave_one_out import augment
from leave_one_out.data.synthetic import scenes
from leave_one_out.evaluate import sensitivity


class KnownInvariances(nn.Module):
  """A parameter-free "LooC model" whose invariances are known by construction.

  Space 0: moments of the per-pixel max and min over channels: invariant to hue shifts (they
  keep max and min), to flips and rotations (they permute pixels). Space 1 ("color"): moments
  of each channel: sensitive to hue, invariant to flips and rotations. Space 2 ("rotation"): the
  row profile of the per-pixel max, symmetrised top-bottom: invariant to hue and to horizontal
  and vertical flips (a horizontal flip before a 90-degree turn is a vertical one after it),
  but a quarter turn swaps it for the column profile.
  """

  num_spaces: int = 3
  looc_plus_plus: bool = False

  @nn.compact
  def __call__(self, x, train=False):
    del train
    hi, lo = x.max(-1), x.min(-1)  # [B, S, S]
    moments = lambda v: jnp.stack([((v - 0.5) ** p).mean((1, 2)) for p in (1, 2, 3)], -1)
    z = [
      jnp.concatenate([moments(hi), moments(lo)], -1),
      jnp.concatenate([moments(x[..., c]) for c in range(3)], -1),
      (hi.mean(axis=2) + hi.mean(axis=2)[:, ::-1]) / 2 - 0.5,
    ]
    dim = max(v.shape[-1] for v in z)
    z = jnp.stack([jnp.pad(v, ((0, 0), (0, dim - v.shape[-1]))) for v in z], axis=1)
    z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    return {"feature": z[:, 0], "space_features": z, "embeddings": z}


def test_sensitivity_of_a_model_with_known_invariances(tmp_path):
  cfg = augment.default_config()
  cfg.image_size = 16
  cfg.spaces = ("color", "rotation")
  cfg.crop.enabled = cfg.blur.enabled = False
  cfg.color.update(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.5, gray_prob=0.0)
  images = scenes.load("test", num_examples=32, image_size=16)["image"]
  kinds = ("embedding:0", "embedding:1", "embedding:2")
  s = sensitivity.augmentation_sensitivity(KnownInvariances(), {}, images, cfg, kinds=kinds)
  assert s["columns"] == ["flip", "color", "rotation"] and s["rows"] == list(kinds)
  m = np.asarray(s["matrix"])
  sensitive = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 1]], bool)  # rows: spaces; cols: flip,
  assert np.all(m[~sensitive] < 1e-3), m  # colour, rotation
  assert np.all(m[sensitive] > 0.05), m
  sensitivity.plot_sensitivity(s, str(tmp_path / "s.png"))
  assert os.path.getsize(tmp_path / "s.png") > 1000
  lines = sensitivity.notes({"sensitivity": s, "kind_labels": {}})
  assert lines[2].startswith("| features    | flip | color | rotation |"), lines
