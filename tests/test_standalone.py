"""leave_one_out/standalone.py: the model in one file that needs only jax, flax and numpy, the
backbone for users' own Flax models (``load_backbone``), and the fine-tuning example of
docs/evaluation.md."""

import contextlib
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import leave_one_out
from leave_one_out import extract
from leave_one_out import models
from leave_one_out import pretrained
from leave_one_out import standalone
from leave_one_out.data.synthetic import scenes
from leave_one_out.objectives import cassle
from tests.helpers import tiny_config
from tests.helpers import write_checkpoint

pytestmark = pytest.mark.xdist_group("test_standalone")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDALONE_PACKAGES = ("jax", "jaxlib", "flax", "numpy")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("standalone") / "run")
  write_checkpoint(path, tiny_config())  # resnet10 width 4, 16 px, spaces color, rotation
  return path


@pytest.fixture(scope="module")
def images():
  return scenes.load("test", num_examples=6, image_size=16)["image"] / np.float32(255)


def _fields(model):
  return {
    f: getattr(model, f)
    for f in standalone.LooCNetwork.__dataclass_fields__
    if f not in ("parent", "name")
  }


TRAINING_ONLY_HEADS = ("head_augself", "head_rotation")  # not part of the forward pass
OBJECTIVE_HEADS = dict(augself_groups="crop,color", rotation_bottleneck=8, condition_groups="crop")


@pytest.mark.parametrize(
  "architecture, looc_plus_plus, small_stem, size, objectives",
  [
    ("resnet10", False, True, 16, {}),
    ("resnet18", True, False, 32, {}),
    ("resnet50", False, False, 32, {}),
    ("resnet10", False, True, 16, OBJECTIVE_HEADS),
  ],
)
def test_the_standalone_network_is_the_package_s_model(
  architecture, looc_plus_plus, small_stem, size, objectives
):
  model = models.LooCModel(
    architecture,
    num_spaces=3,
    width=8,
    embedding_dim=8,
    head_hidden=16,
    looc_plus_plus=looc_plus_plus,
    small_stem=small_stem,
    **objectives,
  )
  x = jax.random.uniform(jax.random.PRNGKey(1), (4, size, size, 3))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  network = standalone.LooCNetwork(**_fields(model))
  fresh = network.init(jax.random.PRNGKey(0), x)
  training_only = lambda tree: {k: v for k, v in tree.items() if k not in TRAINING_ONLY_HEADS}
  assert jax.tree.map(np.shape, fresh) == {
    c: jax.tree.map(np.shape, training_only(t)) for c, t in variables.items()
  }
  for train in (False, True):
    ours = model.apply(variables, x, train=train, mutable=["batch_stats"])
    theirs = network.apply(variables, x, train=train, mutable=["batch_stats"])
    if objectives:
      ours[0].pop("condition_embedding")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), ours, theirs)
  if objectives:  # a CASSLE model's heads read the views' descriptors
    d = jax.random.uniform(jax.random.PRNGKey(2), (4, cassle.size(["crop"])))
    ours = model.apply(variables, x, train=False, condition=d)["embeddings"]
    np.testing.assert_allclose(
      network.apply(variables, x, condition=d)["embeddings"], ours, rtol=1e-5, atol=1e-6
    )


def test_the_standalone_descriptor_groups_are_cassle_s():
  assert standalone.CONDITION_GROUPS == cassle.GROUPS


def test_load_backbone_gives_the_downstream_feature_as_a_flax_module(workdir, images):
  backbone, variables = leave_one_out.load_backbone(workdir)
  assert isinstance(backbone, standalone.Backbone) and sorted(variables["params"]) == ["backbone"]
  model, full, _ = leave_one_out.load_pretrained(workdir)
  expected = extract.extract_features(model, full, images)
  np.testing.assert_allclose(backbone.apply(variables, images), expected, rtol=1e-5, atol=1e-6)
  out, state = backbone.apply(variables, images, train=True, mutable=["batch_stats"])
  assert out.shape == expected.shape and jax.tree.structure(state) == jax.tree.structure(
    {"batch_stats": variables["batch_stats"]}
  )


def test_load_backbone_of_looc_plus_plus_concatenates_the_spaces(tmp_path, images):
  cfg = tiny_config()
  cfg.model.looc_plus_plus = True
  write_checkpoint(str(tmp_path / "run"), cfg)
  backbone, variables = leave_one_out.load_backbone(str(tmp_path / "run"))
  assert sorted(variables["params"]) == ["backbone", "res5_space0", "res5_space1", "res5_space2"]
  model, full, _ = leave_one_out.load_pretrained(str(tmp_path / "run"))
  expected = extract.extract_features(model, full, images, kind="looc++")
  np.testing.assert_allclose(backbone.apply(variables, images), expected, rtol=1e-5, atol=1e-6)


def _docs_example() -> str:
  text = open(os.path.join(REPO, "docs", "evaluation.md")).read()
  blocks = re.findall(r"```python\n(.*?)```", text, re.S)
  (example,) = [b for b in blocks if "load_backbone(" in b and "train_step" in b]
  return example


def test_the_fine_tuning_example_of_the_docs_runs(workdir):
  code = _docs_example().replace('"/tmp/looc_demo"', repr(workdir))
  namespace, printed = {}, io.StringIO()
  with contextlib.redirect_stdout(printed):
    exec(compile(code, "docs/evaluation.md", "exec"), namespace)  # noqa: S102
  losses = [float(x) for x in re.findall(r"loss (\S+)", printed.getvalue())]
  assert len(losses) == 5 and all(np.isfinite(losses)), printed.getvalue()
  tuned = namespace["params"]["backbone"]["backbone"]["stem_conv"]["kernel"]
  before = namespace["pretrained"]["params"]["backbone"]["stem_conv"]["kernel"]
  assert not np.allclose(tuned, before)  # the backbone was fine-tuned, not frozen
  assert losses[-1] < losses[0]


def test_the_standalone_file_imports_nothing_from_the_package():
  source = open(standalone.__file__).read()
  assert not re.search(r"^\s*(from|import)\s+(leave_one_out|ml_collections)", source, re.M)


def _flax_only_venv(cache) -> str:
  """A venv with only jax, jaxlib, flax and numpy (and their dependencies) at the versions here,
  made once and kept in pytest's cache directory (keyed by those versions)."""
  versions = {p: importlib.metadata.version(p) for p in STANDALONE_PACKAGES}
  key = (
    "-".join(f"{p}{v}" for p, v in versions.items())
    + f"-py{sys.version_info[0]}{sys.version_info[1]}"
  )
  root = str(cache.mkdir("flax-only-venv")) + "/" + key
  python = os.path.join(root, "bin", "python")
  if not os.path.exists(os.path.join(root, "ready")):
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", root], check=True)
    pins = [f"{p}=={v}" for p, v in versions.items()]
    subprocess.run(
      [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins],
      check=True,
      timeout=600,
    )
    open(os.path.join(root, "ready"), "w").close()
  return python


@pytest.mark.slow
def test_an_exported_file_runs_with_only_jax_and_flax(workdir, images, tmp_path, request):
  python = _flax_only_venv(request.config.cache)
  out = pretrained.export(workdir, str(tmp_path / "looc.msgpack"))
  shutil.copy(standalone.__file__, tmp_path / "standalone.py")
  np.save(tmp_path / "images.npy", images)
  (tmp_path / "run.py").write_text(
    textwrap.dedent("""
      import importlib.util
      import numpy as np
      for name in ("leave_one_out", "ml_collections", "optax_is_fine_but_this_is_not"):
        assert importlib.util.find_spec(name) is None, name
      import standalone
      images = np.load("images.npy")
      network, variables = standalone.load("looc.msgpack")
      out = network.apply(variables, images)
      backbone, backbone_variables = standalone.load_backbone("looc.msgpack")
      np.savez("out.npz", feature=out["feature"], embeddings=out["embeddings"],
               backbone=backbone.apply(backbone_variables, images))
    """)
  )
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
  result = subprocess.run(
    [python, "run.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr[-3000:]
  got = np.load(tmp_path / "out.npz")
  model, variables, _ = leave_one_out.load_pretrained(out)
  kinds = ["backbone", "embedding:0", "embedding:1", "embedding:2"]
  expected = extract.extract_feature_dict(model, variables, images, kinds)
  np.testing.assert_allclose(got["feature"], expected["backbone"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got["backbone"], expected["backbone"], rtol=1e-5, atol=1e-6)
  for h in range(3):
    np.testing.assert_allclose(
      got["embeddings"][:, h], expected[f"embedding:{h}"], rtol=1e-5, atol=1e-6
    )
