"""Test set-up: 8 fake CPU devices, so sharded code runs as it would on a pod slice.

The flag must be set before jax is imported anywhere.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
