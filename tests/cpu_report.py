"""``python -m pytest -q tests --cpu-report``: where the suite's CPU time goes, per file.

The suite is CPU-bound (docs/testing.md): its wall time is about its CPU time over the cores,
and a test's CPU seconds vary less than its wall seconds on a shared machine. A test's CPU time
here is its process's (user + system) from the start of its setup to the end of its teardown,
plus that of the processes it started and waited for (CLI runs, ``jax.distributed`` workers,
the claims experiment). A module-scoped fixture counts for the test that first needs it. Not
counted: starting the xdist workers and collecting the tests. Each worker measures its own
tests; the controller prints the table.
"""

from __future__ import annotations

import collections
import resource

import pytest

_KEY = "cpu_s"  # the report's user property that carries a test's CPU seconds


def pytest_addoption(parser):
  parser.addoption(
    "--cpu-report",
    action="store_true",
    default=False,
    help="print the CPU seconds (own + child processes) of each test file and "
    "of the slowest tests at the end",
  )


def pytest_configure(config):
  if config.getoption("cpu_report"):
    config.pluginmanager.register(CpuReport(), "cpu_report")


def _cpu_seconds() -> float:
  own = resource.getrusage(resource.RUSAGE_SELF)
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CpuReport:
  """Measures each test where it runs; sums and prints where the reports arrive."""

  def __init__(self):
    self._start = {}  # nodeid -> CPU seconds at the start of its setup (where it runs)
    self.seconds = {}  # nodeid -> CPU seconds of the test (where the reports arrive)

  @pytest.hookimpl(hookwrapper=True)
  def pytest_runtest_protocol(self, item, nextitem):
    del nextitem
    self._start[item.nodeid] = _cpu_seconds()
    yield

  @pytest.hookimpl(hookwrapper=True)
  def pytest_runtest_makereport(self, item, call):
    report = (yield).get_result()
    if call.when == "teardown" and item.nodeid in self._start:
      report.user_properties.append((_KEY, _cpu_seconds() - self._start.pop(item.nodeid)))

  def pytest_runtest_logreport(self, report):
    if report.when == "teardown":
      seconds = dict(report.user_properties).get(_KEY)
      if seconds is not None:
        self.seconds[report.nodeid] = seconds

  def pytest_terminal_summary(self, terminalreporter, config):
    if hasattr(config, "workerinput") or not self.seconds:  # an xdist worker prints nothing
      return
    by_file, tests = collections.Counter(), collections.Counter()
    for nodeid, seconds in self.seconds.items():
      by_file[nodeid.split("::")[0]] += seconds
      tests[nodeid.split("::")[0]] += 1
    total = sum(by_file.values())
    write = terminalreporter.write_line
    terminalreporter.section("CPU seconds per test file (own + child processes)")
    write(f"{'CPU s':>8} {'share':>6} {'tests':>5}  file")
    for name, seconds in by_file.most_common():
      write(f"{seconds:8.1f} {100 * seconds / total:5.1f}% {tests[name]:5d}  {name}")
    write(f"{total:8.1f} {100.0:5.1f}% {sum(tests.values()):5d}  all tests")
    write("")
    write(f"{'CPU s':>8}  the 10 slowest tests")
    for nodeid, seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1])[:10]:
      write(f"{seconds:8.1f}  {nodeid}")
