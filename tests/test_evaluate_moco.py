"""MoCo's linear classification protocol (leave_one_out.evaluate.lib.moco_linear) on tiny images."""

import flax.linen as nn
import ml_collections
import numpy as np
import pytest

from leave_one_out import evaluate
from leave_one_out import extract
from leave_one_out.data.synthetic import scenes
from leave_one_out.evaluate import probe
from leave_one_out.evaluate.lib import classifiers
from leave_one_out.evaluate.lib import moco_linear

# Its module-scoped fixtures are built once: every test of the file runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_evaluate_moco")


class PooledPixels(nn.Module):
  """A parameter-free encoder: the image mean-pooled to 4 x 4 x 3, as every feature kind."""

  num_spaces: int = 1
  looc_plus_plus: bool = False

  @nn.compact
  def __call__(self, x, train=False):
    del train
    b, s = x.shape[0], x.shape[1]
    z = x.reshape(b, 4, s // 4, 4, s // 4, 3).mean((2, 4)).reshape(b, -1) - 0.5
    return {"feature": z, "space_features": z[:, None], "embeddings": z[:, None]}


def section(**overrides) -> ml_collections.ConfigDict:
  p = probe.default_config()
  p.update({"epochs": 6, "batch_size": 32, "decay_epochs": (4,), **overrides})
  return p


@pytest.fixture(scope="module")
def data():
  train = scenes.load("train", num_examples=96, image_size=20, seed=0)
  test = scenes.load("test", num_examples=64, image_size=16, seed=0)
  return train, test


def test_heads_learn_labels_and_rotation_from_random_crops(data):
  train, test = data
  model, kinds = PooledPixels(), ("backbone",)
  p = section(sgd_lr=3.0)
  trained = moco_linear.train_heads(
    model, {}, train["image"], {"color": train["color"]}, {"color": 6}, kinds, p, image_size=16
  )
  assert trained["steps_per_epoch"] == 3 and trained["num_examples"] == 96
  assert len(trained["epoch_seconds"]) == 6 and not any(trained["diverged"].values())
  loss = trained["loss"]["backbone/color"]
  assert loss[-1] < 0.5 * loss[0], loss
  f_test = extract.extract_features(model, {}, test["image"], "backbone")
  head = trained["heads"]["backbone"]["color"]
  assert head["w"].shape == (48, 6)
  acc = classifiers.topk_accuracy(moco_linear.logits(head, f_test), test["color"])
  assert acc > 0.6, acc  # chance 1/6: colour survives crops and flips; centre views at test

  rotated = moco_linear.train_heads(
    model, {}, train["image"], {}, {}, kinds, p, image_size=16, rotate=True
  )
  assert rotated["num_examples"] == 4 * 96 and rotated["steps_per_epoch"] == 12
  turns = np.concatenate([np.rot90(test["image"], k, axes=(1, 2)) for k in range(4)])
  f_turns = extract.extract_features(model, {}, turns, "backbone")
  k = np.repeat(np.arange(4), len(test["image"]))
  head = rotated["heads"]["backbone"][moco_linear.ROTATION]
  acc = classifiers.topk_accuracy(moco_linear.logits(head, f_turns), k)
  assert acc > 0.8, acc  # the light from above tells up from down


def test_an_unstable_learning_rate_is_reported_for_the_rows_it_broke_only(data):
  train, test = data
  p = section(sgd_lr=1e9, epochs=2)
  one_class = np.zeros_like(train["shape"])  # one class: its loss is 0 at any rate
  trained = moco_linear.train_heads(
    PooledPixels(),
    {},
    train["image"],
    {"label": train["shape"], "same": one_class},
    {"label": 6, "same": 1},
    ("backbone",),
    p,
    image_size=16,
  )
  loss = trained["loss"]["backbone/label"]
  assert trained["diverged"] == {"backbone/label": True, "backbone/same": False}
  assert loss[-1] > loss[0] > 1e6, loss
  f_test = extract.extract_features(PooledPixels(), {}, test["image"], "backbone")
  rows = {
    task: probe.moco_result(
      trained["heads"]["backbone"][task], f_test, np.zeros(64, np.int32), trained, task, "backbone"
    )
    for task in ("label", "same")
  }
  assert rows["label"]["diverged"] and not rows["same"]["diverged"]
  results = {"kinds": ["backbone"], "rows": {"backbone": {"probe": rows}}}
  for r in rows.values():
    r["protocol"] = probe.settings(p)
  notes = probe.notes(results)
  assert notes[-1].startswith("linear probe: DIVERGED for backbone / label (")
  assert "same" not in notes[-1]


def test_a_shortened_probe_decays_at_60_and_80_percent_and_late_decays_are_refused():
  assert moco_linear.decay_epochs(section(epochs=100, decay_epochs=())) == (60, 80)
  assert moco_linear.decay_epochs(section(epochs=10, decay_epochs=())) == (6, 8)
  lr = moco_linear.learning_rate(section(epochs=10, decay_epochs=(), sgd_lr=30.0), 2)
  assert [float(lr(s)) for s in (11, 12, 16)] == pytest.approx([30.0, 3.0, 0.3])
  c = evaluate.default_config()
  assert c.probe.decay_epochs == ()
  c.probe.protocol, c.probe.epochs, c.probe.decay_epochs = "moco", 10, (60, 80)
  with pytest.raises(ValueError, match=r"probe.decay_epochs must be below probe.epochs \(10\)"):
    evaluate.validate_config(c)


def test_step_decays():
  p = section(epochs=10, sgd_lr=30.0, decay_epochs=(6, 8, 12), decay_factor=0.1)
  lr = moco_linear.learning_rate(p, steps_per_epoch=5)
  assert [float(lr(s)) for s in (0, 29, 30, 39, 40, 49)] == pytest.approx(
    [30.0, 30.0, 3.0, 3.0, 0.3, 0.3]
  )  # epoch 12 is past the end: ignored


def test_every_example_once_per_epoch_last_batch_masked():
  images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
  labels = {"y": np.arange(10, dtype=np.int32) + 100}
  order = np.random.default_rng(0).permutation(10)
  batches = list(moco_linear._batches(images, labels, order, 4, rotate=False))
  assert [len(b["valid"]) for b in batches] == [4, 4, 4]
  valid = np.concatenate([b["valid"] for b in batches])
  seen = np.concatenate([b["image"][:, 0, 0, 0] for b in batches])[valid]
  assert sorted(seen) == list(range(10)) and valid.sum() == 10
  ys = np.concatenate([b["y"]["y"] for b in batches])[valid]
  np.testing.assert_array_equal(ys, seen.astype(np.int32) + 100)  # labels follow the images
  turns = list(moco_linear._batches(images, {}, np.arange(40), 8, rotate=True))
  pairs = {(int(i), int(k)) for b in turns for i, k in zip(b["image"][:, 0, 0, 0], b["k"])}
  assert pairs == {(i, k) for i in range(10) for k in range(4)}  # every image at every turn
  assert all(np.array_equal(b["y"][moco_linear.ROTATION], b["k"]) for b in turns)


def test_settings_are_recorded_and_described():
  s = probe.settings(section(protocol="moco"))
  assert (s["name"], s["lr"], s["momentum"], s["decay_epochs"]) == ("moco", 30.0, 0.9, [4])
  assert probe.describe(s).startswith(
    "moco (SGD lr 30, momentum 0.9, weight decay 0, batch 32, 6 epochs, x0.1 at 4;"
  )
  fast = probe.settings(section(protocol="fast"))
  assert fast["name"] == "fast" and fast["steps"] == 300
