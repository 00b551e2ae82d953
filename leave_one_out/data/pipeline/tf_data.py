"""TensorFlow on demand for the tf.data pipelines, their options, and derived seeds.

TensorFlow (tf.data, image decoding) is an optional dependency, installed by the ``[data]``
extra: only the tfds and image-folder sources need it. ``tf()`` imports it on first use and, when
it is missing, raises a ``DataError`` that names the extra, so the embedded dataset, pretrained
loading and export work in a core install.
"""

from __future__ import annotations

import numpy as np

from leave_one_out.data import DataError

_TF_STATE = {"ready": False}


def tf():
  """TensorFlow for tf.data only: it never gets an accelerator (those belong to JAX)."""
  try:
    import tensorflow as tensorflow  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(
      "this data source reads images with tf.data, and TensorFlow is not installed: "
      "pip install 'leave_one_out[data]' (or tensorflow-cpu). The embedded datasets "
      "(config.data.name='synthetic') need no TensorFlow."
    ) from e
  if not _TF_STATE["ready"]:
    try:
      tensorflow.config.set_visible_devices([], "GPU")  # (TF never touches TPUs unless asked)
    except (RuntimeError, ValueError):  # already initialised
      pass
    _TF_STATE["ready"] = True
  return tensorflow


def tfds():
  """tensorflow_datasets, with TensorFlow set up first (``tf()``)."""
  tf()
  import tensorflow_datasets  # pylint: disable=g-import-not-at-top

  return tensorflow_datasets


def tf_function(fn):
  """A tf.data function traced as written (no AutoGraph rewrite: it has no Python control flow
  on tensors, and AutoGraph would need its source code)."""
  return tf().autograph.experimental.do_not_convert(fn)


def read_options(deterministic: bool = True):
  """tf.data options of every pipeline here: deterministic order, so a seed fixes the batches."""
  options = tf().data.Options()
  options.deterministic = deterministic
  return options


def derive_seed(*parts) -> int:
  """A 31-bit seed derived from integers (epoch, host, purpose), stable across runs."""
  return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] >> 1)
