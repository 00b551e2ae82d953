"""Pictures of LooC: a grid of its views, or the training curves of a run.

  python -m leave_one_out.visualize --out=views.png [--num_images=6] [--config=configs/demo.py]
      [--seed=0]
  python -m leave_one_out.visualize --curves=WORKDIR [--out=WORKDIR/curves.png]

Views: one row per image, columns q, k_0, k_1..k_n.
Curves (``plot_curves``): from the run's metrics files (``leave_one_out.run.logs.read_metrics``),
one panel each for the loss (the LooC loss and each space's), the contrastive top-1 of each
space (own-view top-1 dashed), the learning rate and, where logged, the online kNN top-1.

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
from leave_one_out.run import logs  # noqa: E402

_OUT = flags.DEFINE_string(
  "out", None, "Where to write the PNG (default: views.png; with --curves WORKDIR/curves.png)."
)
_CURVES = flags.DEFINE_string(
  "curves", None, "A run's workdir: plot its loss, top-1 and lr per space instead of views."
)
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


def plot_curves(records: list[dict], path: str, title: str = "") -> list[str]:
  """Writes the training curves of ``records`` (``logs.read_metrics``) to ``path``; returns
  the embedding spaces found. ValueError when no record holds a loss."""
  train = [r for r in records if "loss" in r]
  if not train:
    raise ValueError("no logged training step (no 'loss' in the metrics files)")
  spaces = sorted(
    {k.split("/", 1)[1] for r in train for k in r if k.startswith("loss/")},
    key=lambda n: (n != "invariant", n),
  )
  online = [r for r in records if "eval/knn_top1" in r]
  panels = 3 + bool(online)
  fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), squeeze=False)
  axes = axes[0]
  series = lambda key, rs=train: (
    [r["step"] for r in rs if key in r],
    [r[key] for r in rs if key in r],
  )
  axes[0].plot(*series("loss"), color="black", label="LooC loss")
  for i, name in enumerate(spaces):
    color = f"C{i}"
    axes[0].plot(*series(f"loss/{name}"), color=color, alpha=0.8, label=name)
    steps, top1 = series(f"top1/{name}")
    axes[1].plot(steps, 100 * np.asarray(top1), color=color, label=f"{name} top-1")
    steps, own = series(f"own_top1/{name}")
    if steps and name != "invariant":
      axes[1].plot(steps, 100 * np.asarray(own), color=color, ls="--", label=f"{name} own-view")
  axes[2].plot(*series("lr"), color="black")
  if online:
    steps, knn = series("eval/knn_top1", online)
    axes[3].plot(steps, 100 * np.asarray(knn), marker="o", color="black")
  titles = ["loss", "top-1 (%)", "learning rate", "online kNN top-1 (%)"]
  for ax, name in zip(axes, titles):
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  axes[1].legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return spaces


def curves_main(workdir: str, out: str | None) -> None:
  records = logs.read_metrics(workdir)
  if not records:
    raise app.UsageError(f"{workdir} holds no metrics-<step>.jsonl files (a run's workdir?)")
  out = out or os.path.join(workdir, "curves.png")
  spaces = plot_curves(records, out, title=os.path.abspath(workdir))
  steps = [r["step"] for r in records if "loss" in r]
  print(f"wrote {out}: steps {steps[0]}-{steps[-1]} ({len(steps)} logged), spaces {spaces}")


def main(argv):
  del argv
  if _CURVES.value:
    curves_main(_CURVES.value, _OUT.value)
    return
  out = _OUT.value or "views.png"
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
  plot_views(images, np.asarray(views), augment.view_names(cfg), out)
  print(
    f"wrote {out}: {len(images)} images ({source_size} px) x "
    f"{augment.num_views(cfg)} views ({cfg.image_size} px)"
  )


if __name__ == "__main__":
  app.run(main)
