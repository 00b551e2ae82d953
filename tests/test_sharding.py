"""The train step's XLA compiler options: Eigen convolutions on CPUs, XLA's defaults elsewhere."""

import re

import jax
import jax.numpy as jnp
import numpy as np

from leave_one_out import sharding


def _weight_gradient(x, dy):
  conv = lambda w: jax.lax.conv_general_dilated(
    x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  return jax.vjp(conv, jnp.zeros((3, 3, x.shape[-1], dy.shape[-1])))[1](dy)[0]


def _convolutions_in_library_fusions(hlo: str) -> int:
  """Convolutions inside fused computations that a library (YNNPACK, XNNPACK) runs."""
  bodies = dict(re.findall(r"^%(\S+) \(.*?\n(.*?)\n\}", hlo, re.S | re.M))
  count = 0
  for called in re.findall(r"calls=%([\w.\-]+), .*\"kind\":\"__(?:ynn|xnn)_fusion\"", hlo):
    count += bodies.get(called, "").count(" convolution(")
  return count


def test_cpu_train_step_runs_its_convolutions_outside_ynnpack_with_the_same_result():
  mesh = sharding.make_mesh()
  options = sharding.train_step_options(mesh)
  assert options == sharding.CPU_TRAIN_STEP  # the CPU backend accepts them
  rng = np.random.default_rng(0)
  # jaxlib 0.10.2's defaults give this weight-gradient convolution to YNNPACK.
  x = jnp.asarray(rng.normal(size=(4, 16, 16, 32)), jnp.float32)
  dy = jnp.asarray(rng.normal(size=(4, 16, 16, 32)), jnp.float32)
  ours = jax.jit(_weight_gradient, compiler_options=options).lower(x, dy).compile()
  assert " convolution(" in ours.as_text()
  assert _convolutions_in_library_fusions(ours.as_text()) == 0
  default = jax.jit(_weight_gradient).lower(x, dy).compile()
  want = np.asarray(default(x, dy))
  np.testing.assert_allclose(
    np.asarray(ours(x, dy)), want, rtol=1e-4, atol=1e-4 * np.abs(want).max()
  )


def test_options_xla_does_not_know_fall_back_to_its_defaults():
  device = jax.devices("cpu")[0]
  assert sharding.accepted(sharding.CPU_TRAIN_STEP, device)
  assert not sharding.accepted({"xla_cpu_no_such_option": True}, device)
  assert not sharding.accepted(
    {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_NO_SUCH_TYPE"}, device
  )


def test_each_question_compiles_once_per_process(monkeypatch):
  """Every run's train step and initial state ask; only the first question of a kind compiles."""
  monkeypatch.setattr(sharding, "_ACCEPTED", {})
  asked, compiles = [], sharding._compiles_with  # pylint: disable=protected-access
  monkeypatch.setattr(
    sharding,
    "_compiles_with",
    lambda options, device: asked.append(options) or compiles(options, device),
  )
  for device in jax.devices()[:3]:  # every CPU device is of one kind
    assert sharding.accepted(dict(sharding.CPU_TRAIN_STEP), device)
    assert sharding.accepted(sharding.CPU_INIT, device)
    assert not sharding.accepted({"xla_cpu_no_such_option": True}, device)
  assert asked == [sharding.CPU_TRAIN_STEP, sharding.CPU_INIT, {"xla_cpu_no_such_option": True}]


def test_cpu_initial_state_compiles_unoptimised_with_the_same_values_to_rounding():
  mesh = sharding.make_mesh()
  assert sharding.init_options(mesh) == sharding.CPU_INIT

  def init(key):  # the kind of code init_state runs: random normals and their norms
    x = jax.random.normal(key, (64, 3, 3, 8))
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)

  key = jax.random.PRNGKey(0)
  ours = jax.jit(init).lower(key).compile(sharding.CPU_INIT)
  # XLA's optimisations on, whatever the suite's JAX_DISABLE_MOST_OPTIMIZATIONS says.
  optimised = (
    jax.jit(init)
    .lower(key)
    .compile({"xla_backend_optimization_level": 3, "xla_llvm_disable_expensive_passes": False})
  )
  np.testing.assert_allclose(
    np.asarray(ours(key)), np.asarray(optimised(key)), rtol=1e-6, atol=1e-6
  )
