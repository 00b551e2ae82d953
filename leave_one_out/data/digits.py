"""scikit-learn's handwritten digits on a canvas: the generator and the data source
(``config.data.name = "digits"``), offline.

The real images available offline whose class a small network learns: the 1,797 scanned digits
of ``sklearn.datasets.load_digits`` (8 x 8 pixels, 17 grey levels, 10 classes; they ship in the
scikit-learn wheel, nothing is downloaded). Real handwriting at a very low resolution. Every
digit has a clear "up" (a turned 6 is a 9), so the rotation probe has something to read besides
low-level cues. docs/preregistration_digits.md fixed this design before any run.

- Split by source image: a fixed permutation (``SPLIT_SEED``, independent of the run's seed)
  puts 1,347 of the 1,797 images in "train" and the other 450 in "test"; no source image is in
  both. Every rendering of a split draws from that split's images only.
- Rendering (``render``): each example draws a source image of its split, an ink hue among
  ``NUM_HUES`` hues 30 degrees apart (HSV saturation 1, value 1), a digit side uniform in
  ``SIZE`` x S and a position that keeps the digit inside the S x S canvas. The digit,
  upsampled bilinearly, is the alpha (grey level / 16) of the ink over a dark grey background
  (``BACKGROUND`` plus per-pixel Gaussian noise of sd ``NOISE``, the same in the three
  channels). Digits are upright; the evaluation's rotation probe turns them itself.
- Labels: ``digit`` (10 classes, the class), ``hue`` (12), ``digit_hue`` (digit x 12 + hue,
  120 classes: a class where colour matters together with shape), ``position`` (the digit's
  centre x, y as fractions of S) and ``scale`` (its side / S); ``source`` is the index of the
  source image among the 1,797.

Deterministic: ``generate`` draws everything from ``np.random.default_rng(seed)`` and renders
with fixed arithmetic, so the same split, size and seed give the same arrays. Pretraining
renders ``data.num_train`` examples of the train split from ``2 * seed``; evaluation renders
its splits from ``2 * seed`` (train) and ``2 * seed + 1`` (test), as the other generated
sources do.
"""

from __future__ import annotations

import functools
import importlib.util

import jax
import numpy as np

from leave_one_out import data as data_lib
from leave_one_out import fields
from leave_one_out.data import DataError
from leave_one_out.data.pipeline import eval_split
from leave_one_out.data.pipeline import memory

NUM_IMAGES = 1797  # sklearn.datasets.load_digits
NUM_TRAIN_IMAGES = 1347  # 75% of them; the other 450 are the test split's
SPLIT_SEED = 0  # the permutation that splits the images (never the run's seed)
NUM_CLASSES = 10
NUM_HUES = 12  # ink hues h * 30 degrees, h = 0..11
SIZE = (0.45, 0.8)  # the digit's side as a fraction of the canvas side S
BACKGROUND = 0.15  # grey level of the background
NOISE = 0.03  # sd of the background's per-pixel Gaussian noise
MIN_IMAGE_SIZE = 16
SPLITS: dict[str, int] = {"train": 4096, "test": 1024}  # default renderings per split
_SPLIT_SEED_OFFSET = {"train": 0, "test": 1}  # a split's rendering seed = 2 * seed + offset
LABELS = ("digit", "hue", "digit_hue")  # the class labels of evaluation
INSTALL = "pip install scikit-learn (a dependency of leave_one_out: pip install -e .)"


def available() -> bool:
  """Whether scikit-learn, which ships the digits, can be imported (no import made)."""
  return importlib.util.find_spec("sklearn") is not None


@functools.lru_cache(maxsize=1)
def source_images() -> tuple[np.ndarray, np.ndarray]:
  """(alpha float32 [1797, 8, 8] in [0, 1] (grey level / 16), digit int32 [1797])."""
  try:
    from sklearn import datasets  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(f"the digits dataset needs scikit-learn, which ships it: {INSTALL}") from e
  digits = datasets.load_digits()
  alpha = np.asarray(digits.images, np.float32) / 16.0
  if alpha.shape != (NUM_IMAGES, 8, 8):
    raise DataError(f"sklearn's load_digits gave images of shape {alpha.shape}, not (1797, 8, 8)")
  return alpha, np.asarray(digits.target, np.int32)


def split_images(split: str) -> np.ndarray:
  """int [1347] (train) or [450] (test): the indices of the split's source images."""
  if split not in _SPLIT_SEED_OFFSET:
    raise ValueError(f"unknown split {split!r}; allowed splits: {sorted(_SPLIT_SEED_OFFSET)}")
  order = np.random.default_rng(SPLIT_SEED).permutation(NUM_IMAGES)
  return order[:NUM_TRAIN_IMAGES] if split == "train" else order[NUM_TRAIN_IMAGES:]


def ink_colors() -> np.ndarray:
  """float32 [12, 3]: the RGB of hue h * 30 degrees at HSV saturation 1 and value 1."""
  h = np.arange(NUM_HUES) / NUM_HUES
  k = (np.array([5.0, 3.0, 1.0])[None] + 6.0 * h[:, None]) % 6.0  # the standard HSV -> RGB
  return (1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


def _upsample_matrices(start: np.ndarray, side: np.ndarray, size: int) -> np.ndarray:
  """float32 [n, size, 8]: bilinear weights of the 8 source pixels for every canvas pixel, the
  digit spanning [start, start + side) in canvas pixels (zero outside the digit)."""
  centres = np.arange(size) + 0.5  # canvas pixel centres
  u = (centres[None] - start[:, None]) / side[:, None] * 8.0 - 0.5  # [n, size] source coords
  lo = np.floor(u)
  frac = u - lo
  m = np.zeros((len(start), size, 8), np.float32)
  for index, weight in ((lo, 1.0 - frac), (lo + 1, frac)):
    r, c = np.nonzero((index >= 0) & (index <= 7))
    np.add.at(m, (r, c, index[r, c].astype(np.int64)), weight[r, c])
  return m


def sample(num_examples: int, split: str, image_size: int, rng: np.random.Generator) -> dict:
  """Every example's source image, hue, side and position (the labels ``generate`` returns)."""
  images = split_images(split)
  n, s = num_examples, image_size
  source = images[rng.integers(0, len(images), n)]
  hue = rng.integers(0, NUM_HUES, n).astype(np.int32)
  side = rng.uniform(*SIZE, n) * s
  corner = rng.uniform(0.0, 1.0, (n, 2)) * (s - side)[:, None]  # x0, y0: inside the canvas
  _, digit = source_images()
  return {
    "source": source.astype(np.int32),
    "digit": digit[source],
    "hue": hue,
    "digit_hue": digit[source] * NUM_HUES + hue,
    "position": ((corner + side[:, None] / 2) / s).astype(np.float32),
    "scale": (side / s).astype(np.float32),
    "_side": side,
    "_corner": corner,
  }


def render(drawn: dict, image_size: int, rng: np.random.Generator) -> np.ndarray:
  """uint8 [N, S, S, 3]: the drawn digits in their ink over the noisy background."""
  alpha_src, _ = source_images()
  s, n = image_size, len(drawn["source"])
  out = np.empty((n, s, s, 3), np.uint8)
  noise = rng.normal(0.0, NOISE, (n, s, s)).astype(np.float32)
  ink = ink_colors()[drawn["hue"]]  # [N, 3]
  for start in range(0, n, 512):  # bounds the float32 temporaries
    part = slice(start, start + 512)
    side, corner = drawn["_side"][part], drawn["_corner"][part]
    my = _upsample_matrices(corner[:, 1], side, s)  # [n, S, 8]
    mx = _upsample_matrices(corner[:, 0], side, s)
    alpha = np.einsum("nyi,nij,nxj->nyx", my, alpha_src[drawn["source"][part]], mx)
    alpha = np.clip(alpha, 0.0, 1.0)[..., None]
    background = np.clip(BACKGROUND + noise[part], 0.0, 1.0)[..., None]
    pixels = background + alpha * (ink[part][:, None, None, :] - background)
    out[part] = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
  return out


def _checked_int(value, name: str, minimum: int) -> int:
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  if value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def generate(num_examples: int, split: str, *, image_size: int = 32, seed: int = 0) -> dict:
  """``num_examples`` renderings of ``split``'s source images, deterministically from ``seed``.

  Returns:
    image: uint8 [N, S, S, 3]; digit, hue, digit_hue, source: int32 [N]; position: float32
    [N, 2] (centre x, y / S); scale: float32 [N] (side / S).
  """
  n = _checked_int(num_examples, "num_examples", 1)
  s = _checked_int(image_size, "image_size", MIN_IMAGE_SIZE)
  rng = np.random.default_rng(_checked_int(seed, "seed", 0))
  drawn = sample(n, split, s, rng)
  image = render(drawn, s, rng)
  return {"image": image, **{k: v for k, v in drawn.items() if not k.startswith("_")}}


def load(
  split: str = "train", *, num_examples: int | None = None, image_size: int = 32, seed: int = 0
) -> dict:
  """A split (``generate``'s arrays): train renders with seed ``2 * seed``, test with
  ``2 * seed + 1``; ``num_examples`` defaults to ``SPLITS[split]``."""
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; allowed splits: {sorted(SPLITS)}")
  seed = _checked_int(seed, "seed", 0)
  n = SPLITS[split] if num_examples is None else num_examples
  return generate(n, split, image_size=image_size, seed=2 * seed + _SPLIT_SEED_OFFSET[split])


# ------------------------------------------------------------------ the data source

RENDERED = True  # rendered in memory at data.image_size (leave_one_out.data)
SPLIT_NAMES = {"train": "train", "test": "test", "validation": "test"}  # config split -> load's


def validate(d) -> None:
  memory.validate_generated(d, SPLIT_NAMES, "digits")
  check = fields.Section(d, "config.data")
  check.check(
    d.image_size >= MIN_IMAGE_SIZE,
    "image_size",
    f"must be >= {MIN_IMAGE_SIZE} for the digits dataset, got {d.image_size}",
  )
  check_ready(d, {})


def check_ready(d, splits: dict) -> None:
  del d, splits
  if not available():
    raise DataError(f"config.data.name = 'digits' needs scikit-learn, which ships them: {INSTALL}")


def describe(d) -> str:
  del d
  return "scikit-learn's handwritten digits on a canvas (1,347 train / 450 test source images)"


def train_source(cfg) -> memory.InMemorySource:
  """``data.num_train`` renderings of the train split; ``labels`` holds their classes (for a
  supervised baseline; the train step reads only the images)."""
  d = cfg.data
  data_lib.check_one_batch(d.num_train, cfg.train.batch_size, "config.data.num_train")
  check_ready(d, {})
  data = load(
    SPLIT_NAMES[d.train_split], num_examples=d.num_train, image_size=d.image_size, seed=cfg.seed
  )
  return memory.InMemorySource(
    data["image"],
    cfg.train.batch_size,
    cfg.seed,
    jax.process_index(),
    jax.process_count(),
    labels={name: data[name] for name in LABELS},
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
  """``split`` rendered at ``image_size`` from ``seed``; ``num_examples`` 0 = ``SPLITS``'."""
  del unused  # host decoding settings: nothing to decode
  check_ready(d, {})
  data = load(
    SPLIT_NAMES[split], num_examples=num_examples or None, image_size=image_size, seed=seed
  )
  arrays = {"image": data["image"], "label": data["digit"]}
  arrays.update({name: data[name] for name in LABELS})
  return eval_split.ArrayEvalSource(
    memory.host_share(arrays, process_index, process_count),
    num_classes=NUM_CLASSES,
    class_names=tuple(str(i) for i in range(NUM_CLASSES)),
    batch_size=batch_size,
    description=f"{describe(d)}, {split}",
  )
