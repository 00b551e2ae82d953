"""A real multi-host run: two processes coordinated by jax.distributed on localhost (CPU, gloo).

Two processes with one device each must train exactly like one process with two devices on the
same global batch: same losses, same params (up to float reduction order).
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np

from tests.helpers import CLI_TINY, final_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ["--config.train.num_steps=3", "--config.log_every_steps=1",
         "--config.checkpoint_every_steps=3", "--config.async_checkpoints=False"]


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(workdir, devices, extra=()):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "")
  return subprocess.Popen(
      [sys.executable, "-m", "leave_one_out.main", "--config=configs/demo.py",
       f"--workdir={workdir}", *CLI_TINY, *STEPS, *extra],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _losses(workdir):
  return [json.loads(line)["loss"] for line in open(os.path.join(workdir, "metrics.jsonl"))]


def test_two_processes_match_one_process(tmp_path):
  single = _launch(tmp_path / "single", devices=2)
  port = _free_port()
  procs = [_launch(tmp_path / "multi", devices=1, extra=[
      "--distributed", f"--coordinator_address=localhost:{port}", "--num_processes=2",
      f"--process_id={i}"]) for i in range(2)]
  for p in [single, *procs]:
    _, err = p.communicate(timeout=400)
    assert p.returncode == 0, err[-4000:]
    if p is procs[1]:
      assert "JAX process 1/2, 1 local / 2 global devices" in err
  np.testing.assert_allclose(_losses(tmp_path / "multi"), _losses(tmp_path / "single"),
                             rtol=1e-5)
  step_a, a = final_state(tmp_path / "single")
  step_b, b = final_state(tmp_path / "multi")
  assert step_a == step_b == 3
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
