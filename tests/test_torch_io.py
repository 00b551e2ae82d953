"""PyTorch checkpoints in and out (leave_one_out.torch_io, python -m leave_one_out.pretrained).

Each format's file is written here by PyTorch from a torchvision-equivalent ResNet with random
weights (tests/torch_models.py; BatchNorm statistics random too), imported, and compared in
evaluation mode with the ResNet that wrote it: the backbone feature, every imported head's
embedding and the key encoder. Exports load into that ResNet with strict=True.
"""

import argparse
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch (optional): pip install torch==2.13.0")

import leave_one_out  # noqa: E402
from leave_one_out import extract  # noqa: E402
from leave_one_out import pretrained  # noqa: E402
from leave_one_out import torch_io  # noqa: E402
from leave_one_out.run import loop  # noqa: E402
from leave_one_out.run import warm_start  # noqa: E402
from tests import torch_models  # noqa: E402
from tests.helpers import tiny_config  # noqa: E402
from tests.helpers import write_checkpoint  # noqa: E402

pytestmark = pytest.mark.xdist_group("test_torch_io")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL = 1e-4  # max |ours - torch| / max |torch| of features and embeddings
OPTIMIZER = {"state": {}, "param_groups": [{"lr": 0.03, "momentum": 0.9, "params": [0, 1]}]}


def _images(small_stem: bool):
  size = 32 if small_stem else 64
  return np.random.RandomState(0).rand(5, size, size, 3).astype(np.float32)


def _close(ours, theirs):
  error = np.abs(ours - theirs).max() / np.abs(theirs).max()
  assert error < RTOL, error
  return error


def _prefix(prefix, sd):
  return {prefix + k: v for k, v in sd.items()}


def _backbone(net):
  return {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}


def _bn_mlp(dims, last_affine=True, bias=False):
  """MoCo v3 / AugSelf projector: Linear(no bias) - BN - ReLU - ... - Linear - BN."""
  layers = []
  for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
    last = i == len(dims) - 2
    layers += [torch.nn.Linear(a, b, bias=bias and last), torch.nn.BatchNorm1d(b, affine=True)]
    if last and not last_affine:
      layers[-1] = torch.nn.BatchNorm1d(b, affine=False)
    if not last:
      layers.append(torch.nn.ReLU())
  return torch.nn.Sequential(*layers)


# Each builder: (file object, query ResNet, its heads or None, key ResNet or None, spaces).
def _torchvision():
  net = torch_models.resnet("resnet18", width=16)
  return net.state_dict(), net, None, None, ()


def _moco_v2():  # full-width ResNet-50, MoCo v2's 2048-2048-128 head
  net, key = torch_models.resnet("resnet50", seed=0), torch_models.resnet("resnet50", seed=1)
  heads, key_heads = (
    torch_models.heads(1, 2048, 2048, 128, 2),
    torch_models.heads(1, 2048, 2048, 128, 3),
  )
  sd = _prefix("module.encoder_q.", _backbone(net))
  sd.update(_prefix("module.encoder_q.fc.", heads[0].state_dict()))
  sd.update(_prefix("module.encoder_k.", _backbone(key)))
  sd.update(_prefix("module.encoder_k.fc.", key_heads[0].state_dict()))
  sd["module.queue"] = torch.randn(128, 256)
  sd["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
  obj = {"epoch": 200, "arch": "resnet50", "state_dict": sd, "optimizer": OPTIMIZER}
  return obj, net, heads, key, ()


def _moco_v1():
  net, key = (
    torch_models.resnet("resnet18", width=16),
    torch_models.resnet("resnet18", width=16, seed=1),
  )
  sd = _prefix("module.encoder_q.", _backbone(net))
  sd.update(_prefix("module.encoder_q.fc.", torch.nn.Linear(128, 128).state_dict()))
  sd.update(_prefix("module.encoder_k.", key.state_dict()))  # with an fc
  sd["module.encoder_k.fc.weight"], sd["module.encoder_k.fc.bias"] = (
    torch.randn(128, 128),
    torch.randn(128),
  )
  sd.update(_prefix("module.", {"queue": torch.randn(128, 64), "queue_ptr": torch.zeros(1)}))
  return {"epoch": 1, "arch": "resnet18", "state_dict": sd}, net, None, key, ()


def _moco_v3():
  net, key = (
    torch_models.resnet("resnet18", width=16),
    torch_models.resnet("resnet18", width=16, seed=1),
  )
  sd = _prefix("module.base_encoder.", _backbone(net))
  sd.update(
    _prefix("module.base_encoder.fc.", _bn_mlp((128, 256, 64), last_affine=False).state_dict())
  )
  sd.update(_prefix("module.momentum_encoder.", _backbone(key)))
  sd.update(
    _prefix("module.momentum_encoder.fc.", _bn_mlp((128, 256, 64), last_affine=False).state_dict())
  )
  sd.update(_prefix("module.predictor.", _bn_mlp((64, 256, 64)).state_dict()))
  return (
    {"epoch": 100, "arch": "resnet18", "state_dict": sd, "optimizer": OPTIMIZER},
    net,
    None,
    key,
    (),
  )


def _looc(module=""):
  net, key = (
    torch_models.resnet("resnet18", width=16),
    torch_models.resnet("resnet18", width=16, seed=1),
  )
  heads, key_heads = torch_models.heads(3, 128, 128, 32, 2), torch_models.heads(3, 128, 128, 32, 3)
  sd = _prefix("backbone_q.", _backbone(net))
  sd.update(_prefix("heads_q.", heads.state_dict()))
  sd.update(_prefix("backbone_k.", _backbone(key)))
  sd.update(_prefix("heads_k.", key_heads.state_dict()))
  for i in range(3):
    sd[f"queue_{i}"], sd[f"queue_ptr_{i}"] = torch.randn(32, 64), torch.zeros(1, dtype=torch.long)
  sd.update(_prefix("aug_classifier.", torch.nn.Linear(128, 3).state_dict()))
  obj = {"epoch": 500, "arch": "resnet18", "state_dict": _prefix(module, sd), "args": {"n_aug": 2}}
  return obj, net, heads, key, ("color", "rotation")


def _augself():
  net = torch_models.resnet("resnet18", width=16, small_stem=True)
  obj = {
    "backbone": _backbone(net),
    "projector": _bn_mlp((128, 128, 128)).state_dict(),
    "ss_predictor": {"crop": _bn_mlp((256, 64, 4)).state_dict()},
    "optimizers": [OPTIMIZER],
    "schedulers": [{"last_epoch": 3}],
  }
  return obj, net, None, None, ()


def _solo_learn():
  net, key = (
    torch_models.resnet("resnet18", width=16),
    torch_models.resnet("resnet18", width=16, seed=1),
  )
  heads, key_heads = torch_models.heads(1, 128, 256, 64, 2), torch_models.heads(1, 128, 256, 64, 3)
  sd = _prefix("backbone.", _backbone(net))
  sd.update(_prefix("momentum_backbone.", _backbone(key)))
  sd.update(_prefix("projector.", heads[0].state_dict()))
  sd.update(_prefix("momentum_projector.", key_heads[0].state_dict()))
  sd.update(_prefix("classifier.", torch.nn.Linear(128, 10).state_dict()))
  sd["queue"], sd["queue_ptr"] = torch.randn(2, 64, 32), torch.zeros(1, dtype=torch.long)
  obj = {"epoch": 5, "global_step": 100, "state_dict": sd, "hyper_parameters": {"lr": 0.3}}
  return obj, net, heads, key, ()


FORMATS = {
  "torchvision": _torchvision,
  "moco_v1": _moco_v1,
  "moco_v3": _moco_v3,
  "looc": _looc,
  "looc_ddp": lambda: _looc("module."),
  "augself": _augself,
  "solo-learn": _solo_learn,
}


def _check_import(build, name, tmp_path):
  obj, net, heads, key, spaces = build()
  path = str(tmp_path / "ckpt.pth")
  torch.save(obj, path)
  summary = torch_io.write_workdir(path, str(tmp_path / "dir"), spaces=spaces or None)
  assert summary["format"] == name.replace("_ddp", "")
  small = net.conv1.kernel_size == (3, 3)
  images = _images(small)
  model, variables, config = leave_one_out.load_pretrained(str(tmp_path / "dir"))
  assert config.augment.image_size == (32 if small else 224)
  kinds = ["backbone"] + ([f"embedding:{h}" for h in range(len(heads))] if heads else [])
  ours = extract.extract_feature_dict(model, variables, images, kinds)
  errors = [_close(ours["backbone"], torch_models.features(net, images))]
  for h in range(len(heads) if heads else 0):
    with torch.no_grad():
      z = heads[h](torch.from_numpy(torch_models.features(net, images)))
    errors.append(_close(ours[f"embedding:{h}"], torch.nn.functional.normalize(z, dim=-1).numpy()))
  assert summary["heads"] == (len(heads) if heads else 0)
  if key is not None:
    model, ema, _ = leave_one_out.load_pretrained(str(tmp_path / "dir"), encoder="ema")
    theirs = torch_models.features(key, images)
    errors.append(_close(extract.extract_features(model, ema, images), theirs))
  return summary, max(errors)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_format_imports_and_gives_the_pytorch_features(name, tmp_path):
  summary, error = _check_import(FORMATS[name], name, tmp_path)
  print(f"{name}: {error:.1e}")
  assert summary["key_encoder"] == (name not in ("torchvision", "augself"))


@pytest.mark.slow
def test_a_moco_v2_resnet50_imports_through_the_command_line(tmp_path):
  """MoCo v2's layout at full width (ResNet-50, 2048-2048-128 head), through the CLI."""
  obj, net, heads, key, _ = _moco_v2()
  torch.save(obj, tmp_path / "moco.pth.tar")
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "leave_one_out.pretrained",
      f"--import_torch={tmp_path}/moco.pth.tar",
      f"--out={tmp_path}/dir",
      "--arch=resnet50",
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "format: moco_v2" in out.stdout and "left out (2): queue, queue_ptr" in out.stdout
  assert "resnet50 (width 64, imagenet stem), 1 head(s), key encoder: yes" in out.stdout
  images = _images(False)
  model, variables, _ = leave_one_out.load_pretrained(str(tmp_path / "dir"))
  ours = extract.extract_feature_dict(model, variables, images, ["backbone", "embedding:0"])
  feature = torch_models.features(net, images)
  print("moco_v2 resnet50:", _close(ours["backbone"], feature))
  with torch.no_grad():
    z = torch.nn.functional.normalize(heads[0](torch.from_numpy(feature)), dim=-1).numpy()
  _close(ours["embedding:0"], z)


# ------------------------------------------------------------------------------- errors


def _save(tmp_path, obj, name="ckpt.pth"):
  torch.save(obj, tmp_path / name)
  return str(tmp_path / name)


def test_missing_unknown_and_misshapen_arrays_are_errors_listing_them(tmp_path):
  obj, *_ = _looc()
  sd = dict(obj["state_dict"])
  del sd["backbone_q.layer1.0.bn1.running_var"]
  sd["backbone_q.layer1.0.extra.weight"] = torch.zeros(3)
  sd["heads_q.1.2.bias"] = torch.zeros(7)
  with pytest.raises(ValueError) as e:
    torch_io.write_workdir(
      _save(tmp_path, {"state_dict": sd}), str(tmp_path / "a"), spaces=("color", "rotation")
    )
  message = str(e.value)
  assert "missing backbone_q.layer1.0.bn1.running_var (16,)" in message
  assert "unexpected backbone_q.layer1.0.extra.weight" in message
  assert "heads_q.1.2.bias: file (7,), model (32,)" in message
  assert not (tmp_path / "a").exists()  # nothing written, nothing loaded partially

  sd = dict(obj["state_dict"], **{"momentum_net.conv1.weight": torch.zeros(1)})
  with pytest.raises(ValueError, match=r"unknown keys \['momentum_net.conv1.weight'\]"):
    torch_io.write_workdir(
      _save(tmp_path, {"state_dict": sd}), str(tmp_path / "b"), spaces=("color", "rotation")
    )
  with pytest.raises(ValueError, match="unknown checkpoint layout.*'encoder.0.weight'"):
    torch_io.write_workdir(
      _save(tmp_path, {"encoder.0.weight": torch.zeros(1)}), str(tmp_path / "c")
    )


def test_heads_spaces_architecture_and_stems_are_checked(tmp_path):
  path = _save(tmp_path, _looc()[0])
  with pytest.raises(
    ValueError, match="the file has 3 heads: name the augmentations of spaces 1..2"
  ):
    torch_io.write_workdir(path, str(tmp_path / "a"))
  with pytest.raises(ValueError, match="the file has 3 heads, --spaces names 2 spaces"):
    torch_io.write_workdir(path, str(tmp_path / "a"), spaces=("color",))
  with pytest.raises(ValueError, match="--arch=resnet50, but the file holds a resnet18"):
    torch_io.write_workdir(path, str(tmp_path / "a"), arch="resnet50", spaces=("color", "rotation"))
  small = torch_models.resnet("resnet18", width=16, small_stem=True)
  solo = {"state_dict": _prefix("backbone.", _backbone(small))}
  with pytest.raises(ValueError, match="solo-learn's CIFAR ResNet pads its 3x3 conv1 by 2"):
    torch_io.write_workdir(_save(tmp_path, solo, "solo.ckpt"), str(tmp_path / "a"))
  torch_io.write_workdir(_save(tmp_path, _backbone(small), "tv.pth"), str(tmp_path / "d"))
  with pytest.raises(FileExistsError, match="already holds checkpoints"):
    torch_io.write_workdir(_save(tmp_path, _backbone(small), "tv.pth"), str(tmp_path / "d"))


def test_pickled_objects_need_trust(tmp_path):
  namespace = argparse.Namespace(lr=0.1)  # a pickled object, as Lightning's hyper-parameters
  obj = {"state_dict": _torchvision()[0], "hyper_parameters": namespace}
  path = _save(tmp_path, obj)
  with pytest.raises(ValueError, match="pass --trust_pickle"):
    torch_io.write_workdir(path, str(tmp_path / "a"))
  assert torch_io.write_workdir(path, str(tmp_path / "a"), trusted=True)["format"] == "torchvision"


def test_without_torch_the_command_names_the_install_command(tmp_path):
  code = (
    "import sys; sys.modules['torch'] = None; "
    f"sys.argv = ['pretrained', '--import_torch={tmp_path}/x.pth', '--out={tmp_path}/d']; "
    "import runpy; runpy.run_module('leave_one_out.pretrained', run_name='__main__')"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
  assert out.returncode != 0
  assert "needs PyTorch: `pip install torch==2.13.0`" in out.stderr, out.stderr[-2000:]


# ------------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A run of this package: ResNet-10 at width 4, small stem, spaces colour and rotation."""
  path = str(tmp_path_factory.mktemp("torch_export") / "run")
  write_checkpoint(path, tiny_config(), step=3)
  return path


def _torch_model(payload):
  net = torch_models.resnet(
    payload["arch"], width=payload["width"], small_stem=payload["small_stem"]
  )
  net.fc = torch.nn.Identity()
  return net


def test_export_loads_strictly_into_torchvision_s_resnet_with_heads_and_normalisation(
  workdir, tmp_path
):
  out = pretrained.export(workdir, str(tmp_path / "looc.pth"))
  payload = torch.load(out, weights_only=True)
  assert (payload["format"], payload["arch"], payload["step"]) == (
    torch_io.TORCH_FORMAT,
    "resnet10",
    3,
  )
  assert payload["spaces"] == ["invariant", "color", "rotation"]
  net = _torch_model(payload)
  net.load_state_dict(payload["state_dict"], strict=True)
  assert all(
    int(v) == 3 for k, v in payload["state_dict"].items() if k.endswith("num_batches_tracked")
  )
  heads = torch_models.heads(3, 32, 16, 8)
  heads.load_state_dict(payload["heads"], strict=True)
  model, variables, config = leave_one_out.load_pretrained(workdir)
  images = _images(True)[:, :16, :16]
  kinds = ["backbone", "embedding:0", "embedding:2"]
  ours = extract.extract_feature_dict(model, variables, images, kinds)
  x = (
    torch.from_numpy(images).permute(0, 3, 1, 2) - payload["input_mean"].view(1, 3, 1, 1)
  ) / payload["input_std"].view(1, 3, 1, 1)
  with torch.no_grad():
    feature = net.eval()(x)
    errors = [_close(ours["backbone"], feature.numpy())]
    for h in (0, 2):
      z = torch.nn.functional.normalize(heads[h](feature), dim=-1).numpy()
      errors.append(_close(ours[f"embedding:{h}"], z))
  print(f"export into torchvision's ResNet: {max(errors):.1e}")


def test_moco_layout_is_what_moco_main_lincls_loads(workdir, tmp_path):
  out = pretrained.export(workdir, str(tmp_path / "moco.pth.tar"), torch_layout="moco")
  # MoCo's main_lincls.py --pretrained, step by step.
  checkpoint = torch.load(out, map_location="cpu", weights_only=True)
  state_dict = checkpoint["state_dict"]
  for k in list(state_dict.keys()):
    if k.startswith("module.encoder_q") and not k.startswith("module.encoder_q.fc"):
      state_dict[k[len("module.encoder_q.") :]] = state_dict[k]
    del state_dict[k]
  net = torch_models.resnet("resnet10", width=4, small_stem=True)
  msg = net.load_state_dict(state_dict, strict=False)
  assert set(msg.missing_keys) == {"fc.weight", "fc.bias"} and not msg.unexpected_keys
  reference = torch.load(out, weights_only=True)["state_dict"]  # sanity_check reads every key
  assert all(
    f"module.encoder_q.{k}" in reference for k in net.state_dict() if not k.startswith("fc.")
  )
  # And back: the file is MoCo v2's layout (head 0 as fc.0/fc.2).
  summary = torch_io.write_workdir(out, str(tmp_path / "back"))
  assert (summary["format"], summary["heads"]) == ("moco_v2", 1)
  _, theirs, _ = leave_one_out.load_pretrained(str(tmp_path / "back"))
  _, ours, _ = leave_one_out.load_pretrained(workdir)
  for collection in ("params", "batch_stats"):
    for name in ("backbone",) + (("head0",) if collection == "params" else ()):
      jax.tree.map(np.testing.assert_array_equal, theirs[collection][name], ours[collection][name])


def test_looc_layout_round_trips(workdir, tmp_path):
  out = pretrained.export(workdir, str(tmp_path / "looc.pt"), torch_layout="looc")
  assert (
    torch_io.write_workdir(out, str(tmp_path / "back"), spaces=("color", "rotation"))["format"]
    == "looc"
  )
  _, theirs, _ = leave_one_out.load_pretrained(str(tmp_path / "back"))
  _, ours, _ = leave_one_out.load_pretrained(workdir)
  jax.tree.map(np.testing.assert_array_equal, theirs, ours)


@pytest.mark.slow
def test_an_imported_resnet18_exports_back_to_the_same_state_dict(tmp_path):
  net = torch_models.resnet("resnet18")
  torch.save(net.state_dict(), tmp_path / "r18.pth")
  torch_io.write_workdir(str(tmp_path / "r18.pth"), str(tmp_path / "dir"))
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "leave_one_out.pretrained",
      f"--workdir={tmp_path}/dir",
      f"--out={tmp_path}/back.pth",
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  back = torch.load(tmp_path / "back.pth", weights_only=True)["state_dict"]
  fresh = torch_models.resnet("resnet18", seed=5)
  fresh.fc = torch.nn.Identity()
  fresh.load_state_dict(back, strict=True)
  for k, v in net.state_dict().items():
    if not k.startswith("fc.") and not k.endswith("num_batches_tracked"):
      torch.testing.assert_close(back[k], v, rtol=0, atol=0)


def test_looc_plus_plus_has_no_torchvision_layout(tmp_path):
  cfg = tiny_config()
  cfg.model.looc_plus_plus = True
  write_checkpoint(str(tmp_path / "run"), cfg)
  with pytest.raises(ValueError, match="LooC\\+\\+ has one res5 stage per space"):
    pretrained.export(str(tmp_path / "run"), str(tmp_path / "x.pth"))


def test_auxiliary_heads_are_exported_beside_the_heads(tmp_path):
  cfg = tiny_config()
  cfg.objectives.augself.weight = 0.5
  cfg.objectives.essl.weight = 0.4
  cfg.objectives.essl.image_size = 8
  cfg.objectives.cassle.enabled = True
  write_checkpoint(str(tmp_path / "aux"), cfg)
  payload = torch.load(pretrained.export(str(tmp_path / "aux"), str(tmp_path / "aux.pth")))
  _torch_model(payload).load_state_dict(payload["state_dict"], strict=True)
  width = cfg.objectives.cassle.width  # CASSLE: heads read [V, descriptor embedding]
  torch_models.heads(3, 32 + width, 16, 8).load_state_dict(payload["heads"], strict=True)
  _, variables, _ = leave_one_out.load_pretrained(str(tmp_path / "aux"))
  rotation = variables["params"]["head_rotation"]
  (name, kernel), *_ = sorted(jax.tree_util.tree_flatten_with_path(rotation)[0], key=str)
  tops = {k.split(".")[0] for k in payload["objective_heads"]}
  assert tops == {"head_augself", "head_rotation", "head_condition"}
  assert "head_condition.bn1.running_var" in payload["objective_heads"]
  flax_key = "head_rotation." + ".".join(str(k.key) for k in name[:-1])
  leaf = {"kernel": "weight", "bias": "bias"}[name[-1].key]
  torch_array = payload["objective_heads"][f"{flax_key}.{leaf}"].numpy()
  np.testing.assert_array_equal(torch_array, np.asarray(kernel).T if leaf == "weight" else kernel)
  with pytest.raises(ValueError, match="CASSLE model's heads .*'moco' layout"):
    pretrained.export(str(tmp_path / "aux"), str(tmp_path / "x.pth"), torch_layout="moco")


# --------------------------------------------------------------- an imported directory in use


def _demo_sized_import(tmp_path, heads: bool):
  """A ResNet-10 at width 4 with a small stem (the tests' tiny config) and, optionally, its three
  heads, imported through the command line with configs/demo.py's other sections."""
  net = torch_models.resnet("resnet10", width=4, small_stem=True)
  sd = _prefix("backbone_q.", _backbone(net))
  if heads:
    sd.update(_prefix("heads_q.", torch_models.heads(3, 32, 16, 8).state_dict()))
  torch.save({"state_dict": sd}, tmp_path / "small.pth")
  args = [
    f"--import_torch={tmp_path}/small.pth",
    f"--out={tmp_path}/dir",
    "--config=configs/demo.py",
  ]
  out = subprocess.run(
    [sys.executable, "-m", "leave_one_out.pretrained", *args]
    + (["--spaces=color,rotation"] if heads else []),
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout


@pytest.mark.slow
def test_a_run_and_the_evaluation_start_from_an_imported_directory(tmp_path):
  printed = _demo_sized_import(tmp_path, heads=True)
  assert "format: looc" in printed and "3 head(s)" in printed
  cfg = tiny_config(steps=1)
  cfg.train.base_lr = 1e-8
  cfg.init_from.path, cfg.init_from.parts = str(tmp_path / "dir"), "backbone_and_heads"
  loop.pretrain(cfg, str(tmp_path / "run"))
  _, imported, _ = leave_one_out.load_pretrained(str(tmp_path / "dir"))
  _, trained, _ = leave_one_out.load_pretrained(str(tmp_path / "run"))
  gap = jax.tree.map(
    lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
    trained["params"],
    imported["params"],
  )
  assert max(jax.tree.leaves(gap)) < 1e-5  # one step at lr 1e-8 from the imported weights

  evaluation = subprocess.run(
    [
      sys.executable,
      "-m",
      "leave_one_out.evaluate",
      f"--workdir={tmp_path}/dir",
      "--config=configs/eval/synthetic.py",
    ]
    + [
      "--config.dataset.num_train=100",
      "--config.dataset.num_test=50",
      "--config.corruption.enabled=False",
    ]
    + [
      "--config.sensitivity.enabled=False",
      "--config.rotation.enabled=False",
      "--config.fewshot.enabled=False",
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=300,
  )
  assert evaluation.returncode == 0, evaluation.stderr[-3000:]
  assert (
    "embedding:2 (rotation)" in evaluation.stdout
    and (tmp_path / "dir" / "evaluation.json").exists()
  )


def test_heads_drawn_at_import_are_no_pretrained_heads(tmp_path):
  printed = _demo_sized_import(tmp_path, heads=False)
  assert "no heads (drawn afresh)" in printed
  assert pretrained.imported(str(tmp_path / "dir"))["heads"] == 0
  cfg = tiny_config(spaces=())
  cfg.init_from.path, cfg.init_from.parts = str(tmp_path / "dir"), "backbone_and_heads"
  with pytest.raises(
    ValueError, match="has no heads of its own.*use config.init_from.parts='backbone'"
  ):
    warm_start.apply(None, cfg)
