"""Augmentation sensitivity (``eval_config.sensitivity``): how far each feature moves when only
one augmentation's parameters change.

For B test images (as stored), a base view is drawn with the pretraining augment config; for
every augmentation a, a second view copies every parameter group of the base view except a's,
which is redrawn so that it differs for every image. The ratio of the mean cosine distance
between the two views' features to the mean distance between two different images' views is the
matrix entry (0 = invariant to a; 1 = as far as another image). LooC should give ~0 for
``embedding:0`` everywhere and a large value for ``embedding:i`` at augmentation i. Written as a
matrix in the results (``results["sensitivity"]``, one for the run, not a table column) and a
heatmap PNG in the workdir (``eval_config.heatmap_file``).
"""

from __future__ import annotations

import copy
import io

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from leave_one_out import augment
from leave_one_out import extract
from leave_one_out import fields
from leave_one_out import render
from leave_one_out.evaluate import tables

PER_KIND = False  # one matrix for the run, stored under results["sensitivity"]


def default_config() -> ml_collections.ConfigDict:
  s = ml_collections.ConfigDict()
  s.enabled = True
  s.num_images = 256  # test images (as stored; views rendered on device)
  s.augmentations = ()  # columns; () = every augmentation enabled in pretraining
  return s


def validate(c: ml_collections.ConfigDict) -> None:
  check = fields.Section(c, "eval_config")
  s = c.sensitivity
  check.boolean("sensitivity.enabled")
  check.integer("sensitivity.num_images", 2)
  for name in s.augmentations:
    if name not in augment.AUGMENTATIONS:
      check.fail(
        "sensitivity.augmentations",
        f"has unknown augmentation {name!r}; available: {augment.AUGMENTATIONS}",
      )


def _redrawn_group(name: str, base: dict, rng, batch: int, forced_cfg) -> dict:
  """A new parameter group for ``name`` that differs from ``base[name]`` for every image."""
  if name == "rotation":
    offset = jax.random.randint(rng, (batch,), 1, 4)
    return {"k": (base["rotation"]["k"] + offset) % 4}
  if name == "flip":
    return {"apply": ~base["flip"]["apply"]}
  return augment.sample_params(rng, batch, forced_cfg)[name]


def augmentation_sensitivity(
  model,
  variables,
  images,
  aug_cfg,
  *,
  kinds,
  augmentations=(),
  seed: int = 0,
  batch_size: int = 256,
  mesh=None,
) -> dict:
  """How far each feature moves when only one augmentation's parameters change.

  For B source images, a base view is drawn with ``aug_cfg`` (``augment.sample_params``). For
  every augmentation a, a second view copies every parameter group of the base view except a's,
  which is redrawn so that it differs for every image (rotation: another quarter turn; flip:
  the opposite; the others: fresh parameters with the augmentation applied for sure). With
  d(u, v) = 1 - cos(u, v):

    distance[kind, a] = mean_b d(z(base_b), z(view_a,b))
    between[kind]     = mean_b d(z(base_b), z(base_{b+1}))   (two different images)
    matrix[kind, a]   = distance / between

  so 0 means invariant to a, and 1 means a moves the feature as far as changing the image.

  Args:
    model, variables: as for ``extract.extract_feature_dict``.
    images: uint8 `[B, H0, W0, 3]` source images (B >= 2).
    aug_cfg: the pretraining augment config (``cfg.augment``).
    kinds: feature kinds (rows).
    augmentations: columns; () = every augmentation enabled in ``aug_cfg``. A disabled one is
      enabled with its default settings for this measurement.
    seed: parameter draws.

  Returns:
    dict with rows (kinds), columns (augmentations), matrix, distance (lists of lists),
    between (list).
  """
  images = np.asarray(images)
  b = images.shape[0]
  if b < 2:
    raise ValueError(f"augmentation_sensitivity needs at least 2 images, got {b}")
  augs = tuple(augmentations) or tuple(a for a in augment.AUGMENTATIONS if aug_cfg[a].enabled)
  render_cfg = copy.deepcopy(aug_cfg)
  with render_cfg.unlocked():
    for a in augs:
      render_cfg[a].enabled = True
  forced_cfg = copy.deepcopy(render_cfg)
  with forced_cfg.unlocked():
    for a in ("flip", "blur", "color", "texture"):
      forced_cfg[a].prob = 1.0

  def draw_and_render(key, images):  # one program: the draws, then the [1 + A, B] views
    k_base, *k_alt = jax.random.split(key, len(augs) + 1)
    base = augment.sample_params(k_base, b, aug_cfg)
    views = [base] + [
      {**base, a: _redrawn_group(a, base, k, b, forced_cfg)} for a, k in zip(augs, k_alt)
    ]
    params = jax.tree.map(lambda *xs: jnp.stack(xs), *views)  # leaves [1 + A, B, ...]
    return render.render(images, params, render_cfg)

  rendered = jax.jit(draw_and_render)(jax.random.key(seed), images)
  rendered = np.asarray(rendered).reshape((-1,) + rendered.shape[2:])
  feats = extract.extract_feature_dict(
    model, variables, rendered, kinds, batch_size=batch_size, mesh=mesh
  )

  def cos_distance(u, v):
    u = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-12)
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    return 1.0 - np.sum(u * v, axis=-1)

  distance, between = [], []
  for kind in kinds:
    z = feats[kind].reshape((1 + len(augs), b, -1)).astype(np.float64)
    distance.append([float(cos_distance(z[0], z[1 + i]).mean()) for i in range(len(augs))])
    between.append(float(cos_distance(z[0], np.roll(z[0], 1, axis=0)).mean()))
  matrix = [[d / max(btw, 1e-12) for d in row] for row, btw in zip(distance, between)]
  return {
    "rows": list(kinds),
    "columns": list(augs),
    "matrix": matrix,
    "distance": distance,
    "between": between,
  }


def plot_sensitivity(sensitivity: dict, path: str, row_labels=None) -> None:
  """Writes the sensitivity matrix as an annotated heatmap PNG."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  m = np.asarray(sensitivity["matrix"])
  rows = row_labels or sensitivity["rows"]
  cols = sensitivity["columns"]
  fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2.5, 0.45 * len(rows) + 1.4))
  im = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=max(1.0, float(np.nanmax(m))))
  ax.set_xticks(range(len(cols)), cols)
  ax.set_yticks(range(len(rows)), rows)
  for i in range(m.shape[0]):
    for j in range(m.shape[1]):
      ax.text(
        j,
        i,
        f"{m[i, j]:.2f}",
        ha="center",
        va="center",
        fontsize=8,
        color="white" if m[i, j] < 0.6 * max(1.0, float(np.nanmax(m))) else "black",
      )
  ax.set_title("augmentation sensitivity\n(cosine distance / distance between images)", fontsize=9)
  fig.colorbar(im, ax=ax, fraction=0.04)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=120)
  plt.close(fig)
  epath.Path(path).write_bytes(buffer.getvalue())  # local or gs://


def evaluate(ctx) -> dict:
  """The matrix of the test split's first ``num_images`` images; writes the heatmap."""
  s = ctx.c.sensitivity
  out = augmentation_sensitivity(
    ctx.model,
    ctx.variables,
    ctx.test.images[: s.num_images],
    ctx.cfg.augment,
    kinds=ctx.kinds,
    augmentations=tuple(s.augmentations),
    seed=ctx.c.seed,
    batch_size=ctx.c.batch_size,
    mesh=ctx.mesh,
  )
  path = ctx.output_path(ctx.c.heatmap_file)
  if path:
    labels = [tables.kind_label(k, ctx.spaces) for k in ctx.kinds]
    plot_sensitivity(out, path, labels)
  return out


def columns(results: dict) -> list:
  del results
  return []


def notes(results: dict) -> list[str]:
  s = results.get("sensitivity")
  if not s:
    return []
  labels = results.get("kind_labels", {})
  body = [
    [labels.get(k, k)] + [f"{v + 0.0:.2f}".replace("-0.00", "0.00") for v in row]
    for k, row in zip(s["rows"], s["matrix"])
  ]
  return [
    "",
    "augmentation sensitivity (mean cosine distance when only that augmentation "
    "changes / distance between images; 0 = invariant):",
    tables.markdown(["features"] + s["columns"], body),
  ]
