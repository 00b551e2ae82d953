"""The synthetic corruptions (leave_one_out.evaluate.lib.common_corruptions) and their evaluator's summary."""

import jax
import numpy as np
import pytest

from leave_one_out.data.synthetic import scenes
from leave_one_out.evaluate import corruption
from leave_one_out.evaluate.lib import common_corruptions


def test_corruptions_every_family_and_severity():
  x = scenes.load("test", num_examples=4, image_size=16)["image"].astype(np.float32) / 255
  key = jax.random.key(0, impl="rbg")
  assert set(common_corruptions.FAMILIES) == {"noise", "blur", "weather", "digital"}
  for name in common_corruptions.CORRUPTIONS:
    outs = [np.asarray(common_corruptions.corrupt_jit(x, name, s, key)) for s in (1, 5)]
    for y in outs:
      assert y.shape == x.shape and y.dtype == np.float32, name
      assert 0.0 <= y.min() and y.max() <= 1.0, name
    d1, d5 = (np.abs(y - x).mean() for y in outs)
    assert d1 > 0 and d5 > 0, name
    if name != "saturate":  # ImageNet-C's saturate desaturates at 1-2, oversaturates at 3-5
      assert d5 > d1, (name, d1, d5)
  np.testing.assert_array_equal(
    common_corruptions.corrupt_jit(x, "gaussian_noise", 3, key),
    common_corruptions.corrupt_jit(x, "gaussian_noise", 3, key),
  )
  with pytest.raises(ValueError, match="unknown corruption 'frost'"):
    common_corruptions.corrupt(x, "frost", 1, key)
  with pytest.raises(ValueError, match="severity"):
    common_corruptions.corrupt(x, "fog", 6, key)


def test_summary_by_family_and_corruption():
  acc = {
    ("gaussian_noise", 1): 0.8,
    ("gaussian_noise", 5): 0.4,
    ("contrast", 1): 0.6,
    ("fog", 3): 0.2,
  }
  s = corruption.summarise(acc, clean=0.9)
  assert s["mean"] == pytest.approx(0.5) and s["relative"] == pytest.approx(0.5 / 0.9)
  assert s["by_corruption"] == {"contrast": [0.6], "fog": [0.2], "gaussian_noise": [0.8, 0.4]}
  assert s["by_family"] == pytest.approx({"noise": 0.6, "digital": 0.6, "weather": 0.2})
  assert s["source"] == "synthetic"
