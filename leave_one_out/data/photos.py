"""Patches of scikit-image's sample photographs: the generator and the data source
(``config.data.name = "photos"``), offline.

The embedded shapes dataset (``leave_one_out.data.synthetic``) is a toy; this source is the cheapest
real one: every image is a square patch cut at a random position and scale out of one of the
photographs in ``skimage.data`` that come with the scikit-image wheel (nothing is downloaded).
Labels:

- ``photo`` (``PHOTOS``): which photograph the patch comes from, the class label of the probes.
- ``position`` / ``scale``: the patch centre (x, y) as fractions of the photograph's width and
  height, and the patch side as a fraction of its shorter side.
- rotation: patches are upright (as photographed); the evaluation rotates them itself
  (``leave_one_out.evaluate``'s rotation probe). Most of the photographs have a clear "up"
  (a face, a cup on a table, a cat, a rocket on its pad, a man with a camera); a few are
  close to rotation-free (the Hubble deep field, cells, gravel, grass, the moon).

Grey photographs are repeated over the three channels, so colour tells colour photographs
from grey ones but nothing more. Train and test patches are drawn independently from the same
photographs, so they overlap in content: the photo probe measures how well a representation
tells the photographs' regions apart, not generalisation to unseen scenes.

Deterministic: ``generate`` draws every patch's photograph, scale and position from
``np.random.default_rng(seed)`` and resamples pixels without randomness (bilinear, 3 x 3
samples per output pixel, from a copy of the photograph pre-shrunk with scikit-image's
anti-aliased resize), so the same seed gives the same arrays for a given scikit-image version.

scikit-image is an optional dependency: ``pip install scikit-image`` (or the ``photos`` extra:
``pip install -e '.[photos]'``). The photographs' sources and licences are listed in
``docs/photos.md``.
"""

from __future__ import annotations

import importlib.util
import math

import jax
import numpy as np

from leave_one_out import data as data_lib
from leave_one_out import fields
from leave_one_out.data import DataError
from leave_one_out.data.pipeline import eval_split
from leave_one_out.data.pipeline import memory

# skimage.data functions whose file ships in the scikit-image wheel (no pooch download), in
# label order. Colour photographs first, then grey ones.
COLOR_PHOTOS: tuple[str, ...] = (
  "astronaut",
  "coffee",
  "chelsea",
  "rocket",
  "hubble_deep_field",
  "immunohistochemistry",
  "retina",
)
GRAY_PHOTOS: tuple[str, ...] = (
  "camera",
  "brick",
  "grass",
  "gravel",
  "moon",
  "coins",
  "clock",
  "page",
  "text",
)
PHOTOS: tuple[str, ...] = COLOR_PHOTOS + GRAY_PHOTOS
FACTORS: dict[str, tuple[str, ...]] = {"photo": PHOTOS}

SPLITS: dict[str, int] = {"train": 4096, "test": 1024}
_SPLIT_SEED_OFFSET = {"train": 0, "test": 1}  # split seed = 2 * seed + offset: disjoint streams

MIN_IMAGE_SIZE = 16
SCALE = (0.25, 0.6)  # patch side / the photograph's shorter side
_SUBSAMPLES = 3  # per output pixel and axis: a box filter over the bilinear samples
_CHUNK = 256  # patches resampled at once; bounds the float32 temporaries


def _skimage_data():
  try:
    import skimage.data  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(
      "the photos dataset (leave_one_out.data.photos) needs scikit-image, which ships the sample photographs: "
      "pip install scikit-image (or pip install -e '.[photos]')"
    ) from e
  return skimage.data


def _checked_int(value, name: str, minimum: int) -> int:
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  if value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def photographs(image_size: int) -> list[np.ndarray]:
  """Every photograph of ``PHOTOS`` as float32 [H, W, 3] in [0, 1], shrunk for ``image_size``.

  Each is resized (scikit-image, anti-aliased) so that its shorter side is
  ``ceil(image_size / SCALE[0])``: the smallest patch then maps about one photograph pixel to
  one output pixel, and larger ones shrink by at most ``SCALE[1] / SCALE[0]``.
  """
  data = _skimage_data()
  from skimage import transform  # pylint: disable=import-outside-toplevel

  short = math.ceil(image_size / SCALE[0])
  out = []
  for name in PHOTOS:
    x = np.asarray(getattr(data, name)())
    if x.ndim == 2:
      x = np.repeat(x[..., None], 3, axis=-1)
    x = x[..., :3].astype(np.float32) / 255.0
    h, w = x.shape[:2]
    f = short / min(h, w)
    if f < 1.0:
      size = (max(short, round(h * f)), max(short, round(w * f)))
      x = transform.resize(x, size + (3,), order=1, anti_aliasing=True, mode="reflect")
    out.append(np.clip(x, 0.0, 1.0).astype(np.float32))
  return out


def _resample_matrices(
  start: np.ndarray, length: np.ndarray, size_in: int, size_out: int
) -> np.ndarray:
  """float32 [n, size_out, size_in]: bilinear + box resampling of [start, start + length).

  start, length: [n], in input pixels, pixel i covering [i, i + 1). Each output pixel averages
  ``_SUBSAMPLES`` bilinear samples spread evenly over its extent (a box filter).
  """
  k, n = _SUBSAMPLES, len(start)
  sub = np.arange(size_out)[:, None] + (np.arange(k)[None, :] + 0.5) / k  # [S, k]
  src = start[:, None, None] + sub[None] * (length / size_out)[:, None, None] - 0.5
  src = np.clip(src, 0.0, size_in - 1.0)  # [n, S, k], pixel-centre coordinates
  lo = np.floor(src).astype(np.int64)
  frac = src - lo
  hi = np.minimum(lo + 1, size_in - 1)
  rows = (np.arange(n)[:, None, None] * size_out + np.arange(size_out)[None, :, None]) * size_in
  flat = np.concatenate([(rows + lo).ravel(), (rows + hi).ravel()])
  weights = np.concatenate([(1.0 - frac).ravel(), frac.ravel()]) / k
  m = np.bincount(flat, weights, minlength=n * size_out * size_in)
  return m.reshape(n, size_out, size_in).astype(np.float32)


def sample_patches(
  num_examples: int, rng: np.random.Generator, shapes: list[tuple[int, int]]
) -> dict[str, np.ndarray]:
  """Draws every patch's photograph (uniform), scale (uniform in ``SCALE``) and centre.

  ``shapes`` are the (height, width) of the photographs. Returns photo int32 [N], scale float32
  [N] (side / shorter side) and position float32 [N, 2] (centre x, y as fractions of width and
  height; the patch always lies inside the photograph).
  """
  n = _checked_int(num_examples, "num_examples", 1)
  photo = rng.integers(0, len(shapes), n).astype(np.int32)
  scale = rng.uniform(*SCALE, n)
  hw = np.asarray(shapes, np.float64)[photo]  # [N, 2]
  side = scale * hw.min(axis=1)
  u = rng.uniform(0.0, 1.0, (n, 2))
  cy = side / 2 + u[:, 1] * (hw[:, 0] - side)
  cx = side / 2 + u[:, 0] * (hw[:, 1] - side)
  position = np.stack([cx / hw[:, 1], cy / hw[:, 0]], axis=1)
  return {
    "photo": photo,
    "scale": scale.astype(np.float32),
    "position": position.astype(np.float32),
  }


def render(patches: dict[str, np.ndarray], images: list[np.ndarray], image_size: int) -> np.ndarray:
  """Cuts and resamples the patches (``sample_patches``' layout) to uint8 [N, S, S, 3].

  Per photograph and chunk of patches, two matrix products: rows (``[n * S, H] @ [H, W * 3]``)
  then columns (batched ``[n, S, W] @ [n, W, S * 3]``).
  """
  s = _checked_int(image_size, "image_size", MIN_IMAGE_SIZE)
  photo = np.asarray(patches["photo"])
  out = np.empty((len(photo), s, s, 3), np.uint8)
  for label, x in enumerate(images):
    h, w = x.shape[:2]
    flat = x.reshape(h, w * 3)
    (idx_all,) = np.nonzero(photo == label)
    for start in range(0, idx_all.size, _CHUNK):
      idx = idx_all[start : start + _CHUNK]
      n = idx.size
      side = np.asarray(patches["scale"], np.float64)[idx] * min(h, w)
      cx = np.asarray(patches["position"], np.float64)[idx, 0] * w
      cy = np.asarray(patches["position"], np.float64)[idx, 1] * h
      my = _resample_matrices(cy - side / 2, side, h, s)  # [n, S, H]
      mx = _resample_matrices(cx - side / 2, side, w, s)  # [n, S, W]
      rows = (my.reshape(n * s, h) @ flat).reshape(n, s, w, 3)  # [n, S(y), W, 3]
      rows = rows.transpose(0, 2, 1, 3).reshape(n, w, s * 3)  # [n, W, S(y) * 3]
      patch = (mx @ rows).reshape(n, s, s, 3).transpose(0, 2, 1, 3)  # [n, S(y), S(x), 3]
      out[idx] = np.round(np.clip(patch, 0.0, 1.0) * 255.0).astype(np.uint8)
  return out


def generate(num_examples: int, *, image_size: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
  """``num_examples`` patches with their labels, deterministically from ``seed``.

  Returns:
    image: uint8 [N, S, S, 3]; photo: int32 [N] (indices into PHOTOS); position: float32 [N, 2]
    patch centre (x, y) as fractions of the photograph; scale: float32 [N] patch side / the
    photograph's shorter side.
  """
  num_examples = _checked_int(num_examples, "num_examples", 1)
  image_size = _checked_int(image_size, "image_size", MIN_IMAGE_SIZE)
  seed = _checked_int(seed, "seed", 0)
  images = photographs(image_size)
  patches = sample_patches(num_examples, np.random.default_rng(seed), [x.shape[:2] for x in images])
  return {"image": render(patches, images, image_size), **patches}


def load(
  split: str = "train", *, num_examples: int | None = None, image_size: int = 64, seed: int = 0
) -> dict[str, np.ndarray]:
  """A split (``generate``'s arrays): train draws with seed ``2 * seed``, test ``2 * seed + 1``.

  ``num_examples`` defaults to ``SPLITS[split]``.
  """
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; allowed splits: {sorted(SPLITS)}")
  if num_examples is None:
    num_examples = SPLITS[split]
  seed = _checked_int(seed, "seed", 0)
  return generate(num_examples, image_size=image_size, seed=2 * seed + _SPLIT_SEED_OFFSET[split])


# ------------------------------------------------------------------ the data source

RENDERED = True  # cut in memory at data.image_size (leave_one_out.data)
SPLIT_NAMES = {"train": "train", "test": "test", "validation": "test"}  # config split -> load's


def validate(d) -> None:
  memory.validate_generated(d, SPLIT_NAMES, "photos")
  fields.Section(d, "config.data").check(
    d.image_size >= MIN_IMAGE_SIZE,
    "image_size",
    f"must be >= {MIN_IMAGE_SIZE} for the photos dataset, got {d.image_size}",
  )


def check_ready(d, splits: dict) -> None:
  del d, splits
  if importlib.util.find_spec("skimage") is None:
    raise DataError(
      "config.data.name = 'photos' needs scikit-image, which ships the "
      "photographs: pip install -e '.[photos]' (or pip install "
      "scikit-image)"
    )


def describe(d) -> str:
  del d
  return f"patches of scikit-image's sample photographs ({len(PHOTOS)} photographs)"


def train_source(cfg) -> memory.InMemorySource:
  d = cfg.data
  data_lib.check_one_batch(d.num_train, cfg.train.batch_size, "config.data.num_train")
  check_ready(d, {})
  images = load(
    SPLIT_NAMES[d.train_split], num_examples=d.num_train, image_size=d.image_size, seed=cfg.seed
  )["image"]
  return memory.InMemorySource(
    images, cfg.train.batch_size, cfg.seed, jax.process_index(), jax.process_count()
  )


def eval_source(
  d,
  split: str,
  *,
  image_size: int,
  batch_size: int,
  num_examples: int,
  seed: int,
  process_index: int,
  process_count: int,
  **unused,
) -> eval_split.ArrayEvalSource:
  """``split`` cut at ``image_size`` from ``seed``; ``num_examples`` 0 = the default size."""
  del unused  # host decoding settings: nothing to decode
  check_ready(d, {})
  data = load(
    SPLIT_NAMES[split], num_examples=num_examples or None, image_size=image_size, seed=seed
  )
  arrays = memory.host_share(
    {"image": data["image"], "label": data["photo"], "photo": data["photo"]},
    process_index,
    process_count,
  )
  return eval_split.ArrayEvalSource(
    arrays,
    num_classes=len(PHOTOS),
    class_names=PHOTOS,
    batch_size=batch_size,
    description=f"{describe(d)}, {split}",
  )
