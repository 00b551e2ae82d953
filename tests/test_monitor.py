"""Online monitoring during pretraining (config.online, leave_one_out.run.monitor): kNN on the
run's own data."""

import json
import re

import pytest

from leave_one_out import config as config_lib
from leave_one_out import data as data_config
from leave_one_out import pretrained
from leave_one_out.run import checkpoints
from leave_one_out.run import monitor
from leave_one_out.run import workdir as workdir_lib
from tests.helpers import tiny_config
from tests.helpers import write_checkpoint
from tests.test_data_folder import make_folder

# Its module-scoped fixtures are built once: every test of the file runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_monitor")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("online") / "run")
  write_checkpoint(path, tiny_config())
  return pretrained.load_pretrained(path)


def test_knn_and_probe_on_the_embedded_dataset(trained):
  model, variables, cfg = trained
  cfg.online.num_train, cfg.online.num_test, cfg.online.linear_probe = 60, 30, True
  out = monitor.monitor(model, variables, cfg)
  assert set(out) == {"eval/knn_top1", "eval/linear_top1"}
  assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in out.values())


def test_a_held_out_slice_of_the_training_folder(trained, tmp_path):
  model, variables, cfg = trained
  root = make_folder(tmp_path / "images", per_class=(10, 1))
  cfg.data = data_config.default_config()
  cfg.data.update(name="folder", data_dir=root, train_split="train", eval_split="val")
  cfg.online.update(eval_split="train", num_train=20, num_test=10, linear_probe=False)
  assert set(monitor.monitor(model, variables, cfg)) == {"eval/knn_top1"}
  cfg.online.num_train = 30  # the whole split: no image left to query
  with pytest.raises(ValueError, match="config.online: train holds only 30 images, none left"):
    monitor.monitor(model, variables, cfg)


@pytest.mark.parametrize(
  "field,value,message",
  [
    ("num_train", 1, "config.online.num_train must be an integer >= 2, got 1"),
    ("eval_split", None, "config.online.eval_split must be a string, got None"),
    ("num_test", 0, "config.online.num_test must be an integer >= 1, got 0"),
  ],
)
def test_bad_fields_are_named(field, value, message):
  c = config_lib.default_config()
  c.online[field] = value
  with pytest.raises(ValueError, match=re.escape(message)):
    config_lib.validate(c)


def test_a_run_saved_before_config_online_resumes():
  current = json.loads(tiny_config().to_json())
  saved = {k: v for k, v in current.items() if k != "online"}
  assert workdir_lib.config_differences(checkpoints.upgrade(saved), current) == []
  changed = json.loads(tiny_config().to_json())
  changed["online"]["num_test"] = 7
  assert workdir_lib.config_differences(current, changed) == []  # monitoring is not the run
