"""Host-side decoding and resizing of one encoded image (tf ops, run inside tf.data maps).

Training (``decode_resize``): the *whole* image is resized to ``S0 x S0`` (this distorts
non-square images) and its original width / height goes along as "aspect", so the on-device
random-resized crop (``leave_one_out.augment``) keeps torchvision's geometry. Evaluation
(``decode_center_crop``): shorter side to ``S / crop_fraction``, centre ``S x S`` crop.

Speed: JPEGs at least twice the target on both sides are decoded at 1/2..1/8 scale in the DCT
domain, and with ``antialias="auto"`` only a side that still shrinks by more than 2x gets a box
filter ("area"); antialiased resizing costs as much as decoding (docs/data.md has the figures).
"""

from __future__ import annotations

from leave_one_out.data.pipeline import tf_data

_JPEG_RATIOS = (1, 2, 4, 8)


def _decode(tf, encoded, min_side=None):
  """uint8 [h, w, 3] and the original (height, width) as float32.

  ``min_side``: the decoded image may be smaller than the original, but keeps both sides at
  least this many pixels: a JPEG is then decoded at 1/2, 1/4 or 1/8 scale in the DCT domain
  (libjpeg's scaled IDCT, an area-like filter), which is several times faster than decoding at
  full size and resizing. Other formats are decoded at full size.
  """
  if min_side is None:
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    return image, size

  def jpeg():
    shape = tf.image.extract_jpeg_shape(encoded)
    factor = tf.reduce_min(shape[:2]) // min_side
    branch = tf.reduce_sum(tf.cast(factor >= tf.constant(_JPEG_RATIOS[1:]), tf.int32))
    image = tf.switch_case(
      branch, [(lambda r=r: tf.io.decode_jpeg(encoded, channels=3, ratio=r)) for r in _JPEG_RATIOS]
    )
    return image, tf.cast(shape[:2], tf.float32)

  def other():
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image, tf.cast(tf.shape(image)[:2], tf.float32)

  is_jpeg = tf.strings.substr(encoded, 0, 3) == b"\xff\xd8\xff"
  image, size = tf.cond(is_jpeg, jpeg, other)
  image.set_shape([None, None, 3])
  return image, size


def _resize(tf, image, new_size, method: str, antialias: str):
  """Resize to ``new_size`` [2] (float32 out; the identity when the size already matches).

  ``antialias``: "always" / "never" antialias ``method``; "auto" uses plain ``method`` where no
  side shrinks by more than 2x (its taps still cover most pixels), a box filter ("area", as cheap
  as bilinear) where both sides shrink and one by more than 2x, and antialiased ``method``
  otherwise. Antialiased bilinear (``tf.image.resize(antialias=True)``) costs about as much as
  decoding the JPEG; docs/data.md has the measurements.
  """

  def resize(aa, how=method):
    return lambda: tf.image.resize(image, new_size, method=how, antialias=aa)

  def general():
    if antialias != "auto":
      return resize(antialias == "always")()
    ratio = tf.cast(tf.shape(image)[:2], tf.float32) / tf.cast(new_size, tf.float32)
    shrink, least = tf.reduce_max(ratio), tf.reduce_min(ratio)
    return tf.cond(
      shrink <= 2.0,
      resize(False),
      lambda: tf.cond(least >= 1.0, resize(False, "area"), resize(True)),
    )

  same = tf.reduce_all(tf.shape(image)[:2] == tf.cast(new_size, tf.int32))
  return tf.cond(same, lambda: tf.cast(image, tf.float32), general)


def _to_uint8(tf, image):
  return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def decode_resize(encoded, size: int, method: str = "bilinear", antialias: str = "auto"):
  """Training: the whole image resized to ``size x size`` (uint8) and its original width / height.

  JPEGs at least twice ``size`` on both sides are decoded at reduced scale first (``_decode``).
  """
  tf = tf_data.tf()
  image, original = _decode(tf, encoded, min_side=size)
  aspect = original[1] / original[0]
  image = _to_uint8(tf, _resize(tf, image, [size, size], method, antialias))
  image.set_shape([size, size, 3])
  return image, aspect


def decode_center_crop(
  encoded,
  size: int,
  crop_fraction: float = 0.875,
  method: str = "bilinear",
  antialias: str = "auto",
):
  """Evaluation: shorter side resized to ``round(size / crop_fraction)``, centre ``size`` crop."""
  tf = tf_data.tf()
  short = max(int(round(size / crop_fraction)), size)
  image, _ = _decode(tf, encoded, min_side=short)
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  new = tf.maximum(tf.cast(tf.round(shape * short / tf.reduce_min(shape)), tf.int32), size)
  image = _resize(tf, image, new, method, antialias)
  top = (new[0] - size) // 2
  left = (new[1] - size) // 2
  image = _to_uint8(tf, image[top : top + size, left : left + size])
  image.set_shape([size, size, 3])
  return image
