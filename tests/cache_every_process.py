"""``python -m tests.cache_every_process MODULE ARGS...``: runs MODULE as ``__main__`` with ARGS,
every ``jax.distributed`` process writing its own persistent compilation cache entries.

JAX writes cache entries from process 0 only (on a pod they are every host's entries). On CPU
each process compiles under its own key, so process 1 of the two-process tests would compile
cold on every launch, though each launch compiles the same programs. This runs the real module
with its real argv; the only change is who may write the cache. Where JAX's private writer is
not found (another JAX version), it runs the module unchanged: slower, the same result.
"""

import runpy
import sys


def _write_from_every_process():
  try:
    from jax._src import compiler
    from jax._src import distributed
  except ImportError:
    return
  write = getattr(compiler, "_cache_write", None)
  if write is None or not hasattr(distributed.global_state, "process_id"):
    return

  def write_as_process_0(*args, **kwargs):
    state = distributed.global_state
    process_id, state.process_id = state.process_id, 0
    try:
      return write(*args, **kwargs)
    finally:
      state.process_id = process_id

  compiler._cache_write = write_as_process_0


if __name__ == "__main__":
  module, *args = sys.argv[1:]
  _write_from_every_process()
  sys.argv = [module, *args]
  runpy.run_module(module, run_name="__main__", alter_sys=True)
