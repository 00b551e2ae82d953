"""``--cpu-report`` (tests/cpu_report.py): per-file CPU seconds, child processes included."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SPINNING_TESTS = """
import subprocess
import sys
import time

SPIN = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < {}: pass"


def test_spins_here():
  exec(SPIN.format(0.3))


def test_spins_in_a_child_process():
  subprocess.run([sys.executable, "-c", SPIN.format(0.6)], check=True)
"""


def _pytest(tmp_path, *args):
  (tmp_path / "test_spinning.py").write_text(SPINNING_TESTS)
  return subprocess.run(
    [
      sys.executable,
      "-m",
      "pytest",
      "-q",
      "-p",
      "tests.cpu_report",
      "-p",
      "no:cacheprovider",
      "-p",
      "no:hypothesispytest",
      "-p",
      "no:benchmark",
      *args,
      str(tmp_path / "test_spinning.py"),
    ],
    cwd=tmp_path,
    env=dict(os.environ, PYTHONPATH=ROOT),
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )


def test_cpu_report_counts_each_test_and_its_child_processes(tmp_path):
  out = _pytest(tmp_path, "--cpu-report", "-n", "1")  # measured in a worker, printed here
  assert out.returncode == 0, out.stdout + out.stderr
  text = out.stdout
  assert "CPU seconds per test file (own + child processes)" in text
  (file_row,) = [line for line in text.splitlines() if line.endswith("  test_spinning.py")]
  seconds, share, tests = file_row.split()[:3]
  assert 0.9 <= float(seconds) < 5 and share == "100.0%" and tests == "2"
  slowest = text.split("the 10 slowest tests")[1].strip().splitlines()
  first = re.match(r"\s*([\d.]+)\s+(\S+)", slowest[0])
  assert first[2].endswith("test_spins_in_a_child_process") and float(first[1]) >= 0.6


def test_no_report_unless_asked(tmp_path):
  out = _pytest(tmp_path, "-p", "no:xdist")
  assert out.returncode == 0, out.stdout + out.stderr
  assert "CPU seconds" not in out.stdout
