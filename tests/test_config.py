"""The config: sections that own their defaults and checks, the recipe configs, the one loader."""

import json
import os
import re

import pytest

from leave_one_out import augment
from leave_one_out import config as config_lib
from leave_one_out import data as data_config
from leave_one_out import losses
from leave_one_out import models
from leave_one_out import optimizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = {
  "data": data_config,
  "augment": augment,
  "model": models,
  "loss": losses,
  "train": optimizer,
}


def test_default_config_is_the_in100_recipe_and_assembles_the_sections():
  c = config_lib.default_config()
  for name, module in SECTIONS.items():
    assert c[name].to_dict() == module.default_config().to_dict(), name
  assert (c.data.name, c.augment.image_size, c.model.architecture) == (
    "imagenet100",
    224,
    "resnet50",
  )
  assert (c.loss.queue_size, c.train.batch_size, c.train.num_epochs) == (16_384, 256, 500)
  config_lib.validate(c)


def test_recipe_configs_override_only_what_differs():
  recipe = config_lib.load_file(os.path.join(ROOT, "configs", "looc_in100_r50.py"))
  assert recipe.to_json() == config_lib.default_config().to_json()
  texture = config_lib.load_file(os.path.join(ROOT, "configs", "looc_in100_r50.py:texture"))
  assert texture.augment.spaces == ("color", "rotation", "texture")
  moco = config_lib.load_file("../configs/moco_in100_r50.py", "rotation", relative_to=__file__)
  assert moco.augment.spaces == () and moco.augment.rotation.enabled


@pytest.mark.parametrize(
  "section,field,value,message",
  [
    ("model", "architecture", "resnet9", "config.model.architecture must be one of"),
    ("model", "dtype", "float16", "config.model.dtype must be one of ('float32', 'bfloat16')"),
    ("model", "width", 0, "config.model.width must be an integer >= 1, got 0"),
    ("loss", "temperature", -1.0, "config.loss.temperature must be a number > 0, got -1.0"),
    ("loss", "z0_positives", "some", "config.loss.z0_positives must be one of ('all', 'k0')"),
    ("train", "schedule", "linear", "config.train.schedule must be one of"),
    ("train", "momentum", 1.0, "config.train.momentum must be a number in [0, 1), got 1.0"),
    ("train", "step_epochs", (400, 300), "config.train.step_epochs must be increasing"),
  ],
)
def test_each_section_names_its_bad_field(section, field, value, message):
  c = SECTIONS[section].default_config()
  c[field] = value
  with pytest.raises(ValueError, match=re.escape(message)):
    SECTIONS[section].validate(c)
  whole = config_lib.default_config()
  whole[section][field] = value
  with pytest.raises(ValueError, match=re.escape(message)):
    config_lib.validate(whole)


def test_cross_section_checks():
  c = config_lib.default_config()
  c.train.batch_size = 200
  with pytest.raises(ValueError, match=r"config.loss.queue_size \(16384\) must be 0 or a multiple"):
    config_lib.validate(c)
  c.loss.queue_size = 0
  with pytest.raises(
    ValueError,
    match=r"config.train.batch_size \(200\) must be divisible by "
    r"the number of devices \(3\)",
  ):
    config_lib.validate(c, num_devices=3)


def test_load_file_resolves_relative_paths_and_args(tmp_path, monkeypatch):
  base = tmp_path / "base.py"
  base.write_text(
    "import ml_collections\n"
    "def get_config(arg=None):\n"
    "  return ml_collections.ConfigDict({'arg': arg or 'none'})\n"
  )
  child = tmp_path / "sub" / "child.py"
  child.parent.mkdir()
  child.write_text(
    "from leave_one_out import config as config_lib\n"
    "def get_config(arg=None):\n"
    "  c = config_lib.load_file('../base.py:x', relative_to=__file__)\n"
    "  c.child = arg\n"
    "  return c\n"
  )
  monkeypatch.chdir(ROOT)  # the child finds its sibling wherever the process runs
  loaded = config_lib.load_file(str(child), "y")
  assert loaded.to_dict() == {"arg": "x", "child": "y"}
  # From the working directory, and from the repository when the working directory is elsewhere.
  assert config_lib.load_file("configs/demo.py").data.name == "digits"
  monkeypatch.chdir(tmp_path)
  assert config_lib.load_file("configs/demo.py").data.name == "digits"
  assert config_lib.load_file("base.py", "z").arg == "z"
  with pytest.raises(FileNotFoundError, match=r"config file 'configs/nope.py' not found; tried"):
    config_lib.load_file("configs/nope.py")


def test_from_json_round_trips_a_saved_config():
  c = config_lib.load_file(os.path.join(ROOT, "configs", "demo.py"))
  saved = json.loads(c.to_json())  # what a checkpoint's meta holds
  again = config_lib.from_json(saved)
  assert json.loads(again.to_json()) == saved and isinstance(again.augment.spaces, tuple)
