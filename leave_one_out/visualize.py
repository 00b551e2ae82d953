"""Writes a PNG grid of LooC views: one row per image, columns q, k_0, k_1..k_n.

  python -m leave_one_out.visualize --out=views.png [--num_images=6] [--config=configs/demo.py]
      [--seed=0]

Images come from the embedded synthetic dataset (``leave_one_out.data.synthetic.scenes``, train split, at the
config's ``data.image_size``, else 64 px; ``--source_size`` overrides).
``--config`` is a config file whose ``.augment`` field is an augment config (overrides such as
``--config.augment.image_size=64`` work); without it, ``augment.default_config()`` at 32 px with
spaces colour, rotation and texture (texture enabled) is used. Each column is titled with what that view
shares with q.
"""

from __future__ import annotations

import os

import jax
import matplotlib
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from leave_one_out import augment  # noqa: E402
from leave_one_out.data import synthetic as synthetic_source  # noqa: E402
from leave_one_out.data.synthetic import scenes  # noqa: E402

_OUT = flags.DEFINE_string("out", "views.png", "Where to write the PNG.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 6, "Rows: how many source images.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the view parameters.")
_SOURCE_SIZE = flags.DEFINE_integer(
  "source_size",
  None,
  "Side of the synthetic source images (default: the config's data.image_size, else 64).",
)
_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Config file with an .augment field.", lock_config=False
)


def demo_config():
  """The default augment config at 32 px with spaces colour, rotation and texture."""
  cfg = augment.default_config()
  cfg.image_size = 32
  cfg.texture.enabled = True
  cfg.spaces = ("color", "rotation", "texture")
  return cfg


def load_images(num_images: int, image_size: int = 64, **kwargs) -> np.ndarray:
  """uint8 [N, S, S, 3] from the synthetic dataset; ``kwargs`` go to ``scenes.load``."""
  return scenes.load("train", num_examples=num_images, image_size=image_size, **kwargs)["image"]


def plot_views(images: np.ndarray, views: np.ndarray, titles: list[str], path: str) -> None:
  """images uint8 [B, H, W, 3]; views float [V, B, S, S, 3]; writes a (B) x (1 + V) grid."""
  v, b = views.shape[:2]
  fig, axes = plt.subplots(b, v + 1, figsize=(1.6 * (v + 1), 1.6 * b + 0.4), squeeze=False)
  for row in range(b):
    axes[row, 0].imshow(images[row])
    for col in range(v):
      axes[row, col + 1].imshow(np.clip(views[col, row], 0.0, 1.0))
  for col, title in enumerate(["source"] + titles):
    axes[0, col].set_title(title.replace(": ", ":\n"), fontsize=8)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  cfg = _CONFIG.value.augment if _CONFIG.value is not None else demo_config()
  augment.validate(cfg)
  data = _CONFIG.value.get("data") if _CONFIG.value is not None else None
  source_size = _SOURCE_SIZE.value
  if source_size is None:
    source_size = data.get("image_size", 64) if data is not None else 64
  light = {} if data is None else {"max_light": synthetic_source.light(data)}
  images = load_images(_NUM_IMAGES.value, source_size, **light)
  views, _ = jax.jit(lambda r, x: augment.make_views(r, x, cfg))(
    jax.random.key(_SEED.value), images
  )
  plot_views(images, np.asarray(views), augment.view_names(cfg), _OUT.value)
  print(
    f"wrote {_OUT.value}: {len(images)} images ({source_size} px) x "
    f"{augment.num_views(cfg)} views ({cfg.image_size} px)"
  )


if __name__ == "__main__":
  app.run(main)
