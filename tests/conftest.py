"""Test set-up: 8 fake CPU devices, so sharded code runs as it would on a pod slice.

The environment is set before jax is imported anywhere, so the subprocesses the tests start
(the CLI, several jax.distributed processes) inherit it:

- a persistent compilation cache in the system temp directory, shared by every test and
  subprocess: the suite builds the same small train steps many times (fresh processes, resumed
  runs), and each repeat becomes a cache hit;
- ``JAX_DISABLE_MOST_OPTIMIZATIONS=1``: XLA skips most of its optimisation passes. The tests'
  programs are tiny and run a few steps, so compiling is most of their cost; unoptimised they
  compile about twice as fast (docs/testing.md). Results are the same computation, rounded
  differently. A test that measures what training learns runs its subprocess without it
  (tests/test_claims.py).
"""

import gc
import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
os.environ.setdefault(
  "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "leave_one_out_test_jax_cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

pytest_plugins = ["tests.cpu_report"]  # --cpu-report: CPU seconds per test file


def pytest_configure(config):
  config.addinivalue_line(
    "markers",
    "slow: real multi-process or end-to-end runs (tens of seconds); they run in "
    "the default suite, deselect with -m 'not slow'",
  )


def pytest_xdist_auto_num_workers(config):
  """``-n auto`` (pytest.ini): one worker per core, at most 4 (each holds jax and TensorFlow)."""
  del config
  return max(1, min(os.cpu_count() or 1, 4))


def pytest_collection_finish(session):
  """Garbage collection in the workers: the modules the tests imported (jax, flax, TensorFlow)
  live as long as the worker, so they are moved out of the collector's reach; and full
  collections, which walk every object the tests' jax caches hold (about 0.3 s each), run 10
  times less often (young objects are collected as usual)."""
  del session
  gc.collect()
  gc.freeze()
  gen0, gen1, gen2 = gc.get_threshold()
  gc.set_threshold(gen0, gen1, gen2 * 10)
