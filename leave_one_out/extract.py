r"""Frozen features of a pretrained LooC model: feature kinds, input preprocessing, extraction.

  from leave_one_out import extract, pretrained
  model, variables, config = pretrained.load_pretrained("/tmp/looc_demo")
  features = extract.extract_features(model, variables, images, kind="backbone",
                                      image_size=config.augment.image_size)  # [N, F]

Feature kinds (``extract_features(..., kind=...)``), docs/method.md, "The idea" and "LooC++":

* ``"backbone"``: the pooled output of the shared backbone. For LooC this is V, the downstream
  feature (``[N, feature_dim]``). For LooC++ the backbone is shared only up to res4, so this is
  the pooled res4 map (``[N, feature_dim / 2]``).
* ``"looc++"``: LooC++ only, the concatenation of every space's pooled res5 feature
  (``[N, H * feature_dim]``), the paper's LooC++ downstream feature.
* ``"space:i"``: space i's pooled feature (its own res5 for LooC++; equal to V for LooC).
* ``"embedding:i"``: head i's L2-normalised output (``[N, embedding_dim]``); space 0 is
  invariant to every augmentation, space i >= 1 sensitive to ``config.augment.spaces[i - 1]``.

Extraction is jitted, batched (the last batch is padded, so one compilation serves all) and
sharded over every device along the batch; parameters are replicated. Images are one array
``[N, H, W, 3]`` or a list of ``[H_i, W_i, 3]`` arrays of any sizes (photos as they come), each
resized (shorter side to S, bilinear, antialiased) and centre-cropped to ``image_size`` S, as
evaluation prepares arrays; uint8 in [0, 255] or floats in [0, 1] (other floats are an error).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import models
from leave_one_out.sharding import DATA_AXIS
from leave_one_out.sharding import make_mesh


def parse_kind(kind: str, model: models.LooCModel) -> tuple[str, int]:
  """``"space:2"`` -> ("space", 2); ValueError naming the kind and the valid ones."""
  valid = feature_kinds(model, all_spaces=True)
  name, _, index = kind.partition(":") if isinstance(kind, str) else ("", "", "")
  ok = (name in ("backbone", "looc++") and not index) or (
    name in ("space", "embedding") and index.isdigit() and int(index) < model.num_spaces
  )
  if name == "looc++" and not model.looc_plus_plus:
    raise ValueError(
      "kind 'looc++' needs a LooC++ model (config.model.looc_plus_plus=True); "
      "for plain LooC the downstream feature is kind='backbone'"
    )
  if not ok:
    raise ValueError(f"unknown feature kind {kind!r}; this model has: {', '.join(valid)}")
  return name, int(index) if index else 0


def feature_kinds(model: models.LooCModel, *, all_spaces: bool = False) -> list[str]:
  """The kinds worth evaluating: backbone, looc++ (LooC++ only), space:i (LooC++ only, unless
  ``all_spaces``: for LooC every space feature equals the backbone), embedding:i."""
  h = range(model.num_spaces)
  kinds = ["backbone"]
  if model.looc_plus_plus:
    kinds.append("looc++")
  if model.looc_plus_plus or all_spaces:
    kinds += [f"space:{i}" for i in h]
  return kinds + [f"embedding:{i}" for i in h]


def preprocess_batch(images, image_size: int | None):
  """uint8 [0, 255] or float [0, 1] images `[B, H, W, 3]` -> float32 `[B, S, S, 3]` in [0, 1].

  The shorter side is resized to S (bilinear, antialiased) and the centre S x S is kept;
  ``image_size=None`` leaves the size as it is. Jittable (shapes are static).
  """
  x = images.astype(jnp.float32)
  if images.dtype == jnp.uint8:
    x = x / 255.0
  if image_size is None:
    return x
  b, h, w, c = x.shape
  if (h, w) != (image_size, image_size):
    scale = image_size / min(h, w)
    nh, nw = max(image_size, round(h * scale)), max(image_size, round(w * scale))
    x = jax.image.resize(x, (b, nh, nw, c), "linear", antialias=True)
    top, left = (nh - image_size) // 2, (nw - image_size) // 2
    x = x[:, top : top + image_size, left : left + image_size]
  return x


_preprocess_jit = jax.jit(preprocess_batch, static_argnames=("image_size",))


FLOAT_TOLERANCE = 1e-3  # float images may stray this far outside [0, 1] (rounding)


def check_range(images) -> None:
  """ValueError unless float ``images`` lie in [0, 1] (uint8 is [0, 255] by type)."""
  if np.issubdtype(np.dtype(images.dtype), np.floating) and images.size:
    xp = jnp if isinstance(images, jax.Array) else np  # no transfer either way
    low, high = float(xp.min(images)), float(xp.max(images))
    if low < -FLOAT_TOLERANCE or high > 1 + FLOAT_TOLERANCE:
      raise ValueError(
        f"float images must be in [0, 1], got values in [{low:g}, {high:g}]; pass uint8 "
        "[0, 255] images or divide by 255"
      )


def as_batch(images, image_size: int | None):
  """``images`` as one `[N, H, W, 3]` array: an array as it is; a list of `[H_i, W_i, 3]`
  images (any sizes) stacked, each resized and centre-cropped to ``image_size`` first
  (``preprocess``; one compilation per distinct size) unless all share one size."""
  if not isinstance(images, (list, tuple)):
    return images
  if not images:
    raise ValueError("images is empty")
  arrays = [np.asarray(x) for x in images]
  bad = [i for i, x in enumerate(arrays) if x.ndim != 3 or x.shape[-1] != 3]
  if bad:
    raise ValueError(
      f"a list of images holds [H, W, 3] arrays; image {bad[0]} has shape {arrays[bad[0]].shape}"
    )
  for x in arrays:
    check_range(x)
  if len({x.shape for x in arrays}) == 1 and len({x.dtype for x in arrays}) == 1:
    return np.stack(arrays)
  if image_size is None:
    raise ValueError(
      "images of different sizes need image_size (e.g. config.augment.image_size): each is "
      "resized and centre-cropped to it"
    )
  out = np.empty((len(arrays), image_size, image_size, 3), np.float32)
  by_shape = {}
  for i, x in enumerate(arrays):
    by_shape.setdefault((x.shape, x.dtype.str), []).append(i)
  for indices in by_shape.values():
    out[indices] = preprocess(np.stack([arrays[i] for i in indices]), image_size)
  return out


def preprocess(images, image_size: int | None, *, batch_size: int = 1024) -> np.ndarray:
  """``preprocess_batch`` over a whole array in batches: float32 numpy `[N, S, S, 3]`."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [N, H, W, 3], got shape {images.shape}")
  return np.concatenate(
    [
      np.asarray(_preprocess_jit(images[i : i + batch_size], image_size))
      for i in range(0, len(images), batch_size)
    ]
  )


@functools.partial(jax.jit, static_argnames=("model", "kinds", "image_size"))
def _forward(model, variables, images, *, kinds: tuple[str, ...], image_size: int | None):
  """Every requested kind for one batch: dict kind -> `[B, F]` float32."""
  x = preprocess_batch(images, image_size)
  need_trunk = model.looc_plus_plus and "backbone" in kinds
  if need_trunk:
    out, state = model.apply(
      variables,
      x,
      train=False,
      capture_intermediates=(lambda mdl, method: mdl.name == "backbone" and method == "__call__"),
      mutable=["intermediates"],
    )
    trunk = state["intermediates"]["backbone"]["__call__"][0]
  else:
    out = model.apply(variables, x, train=False)
  feats = {}
  for kind in kinds:
    name, i = parse_kind(kind, model)
    if name == "backbone":
      feats[kind] = jnp.mean(trunk, axis=(1, 2)) if need_trunk else out["feature"]
    elif name == "looc++":
      feats[kind] = out["feature"]
    elif name == "space":
      feats[kind] = out["space_features"][:, i]
    else:
      feats[kind] = out["embeddings"][:, i]
  return {k: v.astype(jnp.float32) for k, v in feats.items()}


def batch_features(
  model, variables, images, kinds: Sequence[str], *, image_size: int | None = None
) -> dict:
  """Every kind of ``kinds`` for one batch, inside another jitted function (the forward pass of
  ``extract_feature_dict``; the model in inference mode): dict kind -> float32 `[B, F]`."""
  return _forward(model, variables, images, kinds=tuple(kinds), image_size=image_size)


def extract_feature_dict(
  model,
  variables,
  images,
  kinds: Sequence[str],
  *,
  image_size: int | None = None,
  batch_size: int = 256,
  mesh: Mesh | None = None,
) -> dict[str, np.ndarray]:
  """Several feature kinds from one forward pass per batch.

  Args:
    model, variables: from ``load_pretrained``. Any flax module works that has LooCModel's
      ``num_spaces`` and ``looc_plus_plus`` attributes and returns its dict ("feature",
      "space_features" `[B, H, F]`, "embeddings" `[B, H, D]`) from
      ``model.apply(variables, images, train=False)``.
    images: `[N, H, W, 3]`, uint8 in [0, 255] or float in [0, 1] (numpy or jax), or a list
      of `[H_i, W_i, 3]` images of any sizes (``as_batch``; needs ``image_size``).
    kinds: feature kinds (module docstring), e.g. ``("backbone", "embedding:1")``.
    image_size: resize (shorter side) and centre-crop to this side first, on device; use
      ``config.augment.image_size`` for the pretraining resolution. None: as given.
    batch_size: images per forward pass; rounded up to a multiple of the device count. Every
      batch (the last one padded) has this size, so there is one compilation.
    mesh: a 1-D mesh with axis "data"; None = every device.

  Returns:
    dict kind -> float32 numpy `[N, F_kind]`.
  """
  kinds = tuple(kinds)
  for kind in kinds:
    parse_kind(kind, model)
  images = as_batch(images, image_size)
  images = np.asarray(images) if not isinstance(images, jax.Array) else images
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [N, H, W, 3], got shape {images.shape}")
  check_range(images)
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
  if images.shape[0] == 0:
    raise ValueError("images is empty")
  mesh = make_mesh() if mesh is None else mesh
  n, devices = images.shape[0], mesh.size
  batch = math.ceil(min(batch_size, max(n, 1)) / devices) * devices
  variables = jax.device_put(variables, NamedSharding(mesh, P()))
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  chunks = {k: [] for k in kinds}
  for start in range(0, n, batch):
    chunk = np.asarray(images[start : start + batch])
    valid = chunk.shape[0]
    if valid < batch:
      chunk = np.concatenate([chunk, np.zeros((batch - valid,) + chunk.shape[1:], chunk.dtype)])
    out = _forward(
      model, variables, jax.device_put(chunk, sharding), kinds=kinds, image_size=image_size
    )
    for k, v in jax.device_get(out).items():
      chunks[k].append(np.asarray(v[:valid]))
  return {k: np.concatenate(v) for k, v in chunks.items()}


def extract_features(
  model,
  variables,
  images,
  kind: str = "backbone",
  *,
  image_size: int | None = None,
  batch_size: int = 256,
  mesh: Mesh | None = None,
) -> np.ndarray:
  """Frozen features of one kind, float32 numpy `[N, F]` (see ``extract_feature_dict``).

  ``kind``: "backbone" (V for LooC), "looc++" (LooC++ concatenation), "space:i" (space i's
  pooled feature) or "embedding:i" (head i's L2-normalised output).
  """
  return extract_feature_dict(
    model, variables, images, (kind,), image_size=image_size, batch_size=batch_size, mesh=mesh
  )[kind]
