"""The benchmarks run and print their tables (figures live in BENCHMARKS.md, not in tests)."""

import os
import subprocess
import sys

from leave_one_out.benchmarks import step
from leave_one_out.benchmarks import views

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_step_benchmark_prints_a_row_per_kind():
  table = step.bench_step(["moco", "supervised"], "resnet10", 4, 32, 8, "float32",
                               num_spaces=1, repeats=1, peak_tflops=0.0)
  rows = [line for line in table.splitlines() if line.startswith("| ")]
  assert [r.split(" | ")[0] for r in rows[1:]] == ["| moco", "| supervised"]
  moco = rows[1].split(" | ")
  assert float(moco[3]) > 0 and float(moco[6]) > 0  # step ms, "x supervised" filled in


def test_views_benchmark_prints_a_row_per_size():
  table = views.bench_views(4, [32], source_factor=1.25, repeats=1)
  assert table.splitlines()[2].startswith("| 32 | 40 | 4 | 5 |")


def test_benchmark_commands_share_the_process_without_flag_clashes():
  """Both benchmark commands and the check import together (no flag is defined twice), and
  each command's --help lists its own flags."""
  code = ("import leave_one_out.benchmark, leave_one_out.bench_input; "
          "import leave_one_out.benchmarks.accelerator_check")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
  for module, flag in (("leave_one_out.benchmark", "--what"),
                       ("leave_one_out.bench_input", "--file_size")):
    out = subprocess.run([sys.executable, "-m", module, "--helpfull"], cwd=ROOT, timeout=120,
                         capture_output=True, text=True)
    assert flag in out.stdout, out.stderr[-2000:]
