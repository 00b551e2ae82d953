"""Test set-up: 8 fake CPU devices, so sharded code runs as it would on a pod slice.

The flag must be set before jax is imported anywhere.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import tempfile  # noqa: E402

import jax  # noqa: E402

# Tests build the same small train steps many times (fresh processes, resumed runs): a persistent
# compilation cache turns every repeat into a cache hit.
jax.config.update("jax_compilation_cache_dir",
                  os.path.join(tempfile.gettempdir(), "leave_one_out_test_jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: long tests (real multi-process or end-to-end runs); still in the default "
      "suite")
