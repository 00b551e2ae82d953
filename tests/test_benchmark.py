"""The benchmarks run and print their tables (figures live in BENCHMARKS.md, not in tests)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from leave_one_out.benchmarks import step
from leave_one_out.benchmarks import views

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_step_benchmark_prints_a_row_per_kind():
  # The accelerator check's tiny size (accelerator_check.SIZES): the two share compiled steps.
  table = step.bench_step(
    ["moco", "supervised"],
    "resnet10",
    8,
    32,
    16,
    "bfloat16",
    num_spaces=3,
    repeats=1,
    peak_tflops=0.0,
  )
  rows = [line for line in table.splitlines() if line.startswith("| ")]
  assert [r.split(" | ")[0] for r in rows[1:]] == ["| moco", "| supervised"]
  moco = rows[1].split(" | ")
  assert float(moco[3]) > 0 and float(moco[6]) > 0  # step ms, "x supervised" filled in


def test_views_benchmark_prints_a_row_per_size():
  table = views.bench_views(4, [32], source_factor=1.25, repeats=1)
  assert table.splitlines()[2].startswith("| 32 | 40 | 4 | 5 |")


def test_one_benchmark_command_defines_every_benchmarks_flags_once():
  """``python -m leave_one_out.benchmarks``: its --help lists the flags of the step, input and
  accelerator-check benchmarks (absl refuses a flag defined twice), and --what is checked."""
  out = subprocess.run(
    [sys.executable, "-m", "leave_one_out.benchmarks", "--helpfull"],
    cwd=ROOT,
    timeout=120,
    capture_output=True,
    text=True,
  )
  for flag in ("--what", "--kinds", "--file_size", "--report", "--sections"):
    assert flag in out.stdout, (flag, out.stderr[-2000:])
  out = subprocess.run(
    [sys.executable, "-m", "leave_one_out.benchmarks", "--what=nope"],
    cwd=ROOT,
    timeout=120,
    capture_output=True,
    text=True,
  )
  assert out.returncode != 0 and "unknown --what ['nope']" in out.stderr, out.stderr[-2000:]


def _torch_reference():
  pytest.importorskip(
    "torch", reason="the PyTorch comparison needs PyTorch (optional): pip install torch==2.13.0"
  )
  from leave_one_out.benchmarks import torch_reference  # pylint: disable=import-outside-toplevel

  return torch_reference


def test_torch_reference_loss_is_the_project_loss():
  """The PyTorch step optimises the loss of losses.looc_loss (z0 "all", mean over spaces)."""
  torch_reference = _torch_reference()
  import torch  # pylint: disable=import-outside-toplevel

  from leave_one_out import losses  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  q = rng.normal(size=(6, 3, 8))
  k = rng.normal(size=(3, 6, 3, 8))
  q /= np.linalg.norm(q, axis=-1, keepdims=True)
  k /= np.linalg.norm(k, axis=-1, keepdims=True)
  want, _ = losses.looc_loss(q.astype(np.float32), k.astype(np.float32), temperature=0.2)
  got = torch_reference.looc_loss(torch.tensor(q), torch.tensor(k), temperature=0.2)
  np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
  # Swapping the own keys of two spaces changes it: the positives are per space.
  swapped = k[[0, 2, 1]]
  assert (
    abs(float(torch_reference.looc_loss(torch.tensor(q), torch.tensor(swapped))) - float(got))
    > 1e-3
  )


def test_torch_reference_views_share_exactly_the_query_factor():
  torch_reference = _torch_reference()
  rng = np.random.default_rng(1)
  for _ in range(20):
    q, k0, k_color, k_rotation = torch_reference.view_params(rng, 40, 30)
    assert k_color["color"] == q["color"] and k_color["rotation"] != q["rotation"]
    assert k_rotation["rotation"] == q["rotation"] and k_rotation["color"] != q["color"]
    assert k0["rotation"] != q["rotation"]
    left, top, right, bottom = q["crop"]
    assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
  images = rng.integers(0, 256, (2, 20, 20, 3), dtype=np.uint8)
  views = torch_reference.make_views(rng, images, 16)
  assert tuple(views.shape) == (4, 2, 3, 16, 16)


@pytest.mark.slow
def test_torch_comparison_prints_a_row_per_variant():
  _torch_reference()
  from leave_one_out.benchmarks import compare_torch  # pylint: disable=import-outside-toplevel

  table = compare_torch.bench_torch(["jax", "torch"], "resnet10", 4, 16, 8, num_spaces=2, repeats=1)
  rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ")][1:]
  assert [r[0] for r in rows] == ["| jax", "| torch"]
  jax_row, torch_row = rows
  assert float(torch_row[5]) == 1.0 and float(jax_row[5]) > 0  # x torch
  assert float(jax_row[4]) > 0 and float(torch_row[4]) > 0  # img/s end to end
  assert np.isfinite(float(jax_row[-1].rstrip(" |"))) and "load average" in table


def test_torch_comparison_without_torch_names_the_install_command():
  """Where torch is missing, the command fails at once, naming the command that installs it."""
  code = (
    "import sys; sys.modules['torch'] = None; "
    "sys.argv = ['benchmark', '--what=torch', '--num_spaces=2']; import runpy; "
    "runpy.run_module('leave_one_out.benchmarks', run_name='__main__')"
  )
  out = subprocess.run(
    [sys.executable, "-c", code], cwd=ROOT, timeout=120, capture_output=True, text=True
  )
  assert out.returncode != 0
  assert "pip install torch==2.13.0" in out.stderr, out.stderr[-2000:]


def test_torch_comparison_rejects_spaces_it_cannot_render():
  from leave_one_out.benchmarks import compare_torch  # pylint: disable=import-outside-toplevel

  with pytest.raises(ValueError, match="num_spaces must be 0 to 2"):
    compare_torch.measure(["jax"], "resnet10", 4, 16, 4, num_spaces=3, repeats=1)
  with pytest.raises(ValueError, match="unknown variants"):
    compare_torch.measure(["jax", "tf"], "resnet10", 4, 16, 4, num_spaces=2, repeats=1)


def test_convolution_list_is_the_models_convolutions():
  """The convolutions the torch_convs table times (and counts FLOPs of) are the model's."""
  import jax  # pylint: disable=import-outside-toplevel

  from leave_one_out import models  # pylint: disable=import-outside-toplevel
  from leave_one_out.benchmarks import compare_torch  # pylint: disable=import-outside-toplevel

  model = models.LooCModel(architecture="resnet18", num_spaces=1, width=8, small_stem=True)
  shapes = jax.eval_shape(
    lambda: model.init(jax.random.key(0), np.zeros((1, 32, 32, 3)), train=False)
  )
  kernels = sorted(
    tuple(leaf.shape) for leaf in jax.tree.leaves(shapes["params"]) if leaf.ndim == 4
  )
  listed = sorted(
    (c["kernel"], c["kernel"], c["cin"], c["cout"])
    for c in compare_torch.resnet_convolutions("resnet18", 8, 32)
  )
  assert listed == kernels and len(listed) == 20
  with pytest.raises(ValueError, match="basic-block"):
    compare_torch.resnet_convolutions("resnet50", 8, 32)


@pytest.mark.slow
def test_convolution_table_prints_each_kind_for_each_backend():
  _torch_reference()
  from leave_one_out.benchmarks import compare_torch  # pylint: disable=import-outside-toplevel

  table = compare_torch.bench_convolutions("resnet10", 4, 16, 2, num_spaces=2, repeats=1)
  rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ")][1:]
  assert [r[0] for r in rows] == ["| forward", "| input gradient", "| weight gradient", "| all"]
  assert all(float(r[2].replace(",", "")) > 0 for r in rows)  # jax-xla-defaults ms


def test_step_kinds_name_a_base_and_the_objectives_it_runs_with():
  assert step.parse_kind("moco+augself+essl") == ("moco", ["augself", "essl"])
  cfg = step.step_config("looc+essl", "resnet10", 8, 32, 16, "float32", num_spaces=2)
  assert cfg.augment.spaces == ("color", "rotation")
  assert (cfg.objectives.essl.weight, cfg.objectives.essl.image_size) == (0.4, 14)
  assert not cfg.objectives.augself.weight and not cfg.objectives.cassle.enabled
  assert step.step_config(
    "moco+cassle", "resnet10", 8, 32, 16, "float32", 2
  ).objectives.cassle.enabled
  for bad in ("supervised+essl", "moco+rotnet", "simclr"):
    with pytest.raises(ValueError, match="unknown step kind"):
      step.parse_kind(bad)
