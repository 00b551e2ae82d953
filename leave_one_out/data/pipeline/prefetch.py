"""Device prefetch: global ``jax.Array`` batches placed on the devices by a background thread."""

from __future__ import annotations

import queue
import threading

import jax


class _Failure:
  def __init__(self, error):
    self.error = error


_END = object()


class _DevicePrefetcher:
  """Iterator over global batches placed on the devices ahead of time by one worker thread."""

  def __init__(self, batches, sharding, size: int):
    self._buffer: queue.Queue = queue.Queue(maxsize=max(1, size))
    self._stop = threading.Event()
    self._batches, self._sharding = batches, sharding
    self._thread = threading.Thread(target=self._produce, name="prefetch_to_device", daemon=True)
    self._thread.start()  # fills the buffer now, before the first next()

  def _put(self, item) -> bool:
    while not self._stop.is_set():
      try:
        self._buffer.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _produce(self):
    try:
      for batch in self._batches:
        placed = jax.tree.map(
          lambda x: jax.make_array_from_process_local_data(self._sharding, x), batch
        )
        if not self._put(placed):
          return
      self._put(_END)
    except BaseException as e:  # pylint: disable=broad-except
      self._put(_Failure(e))

  def __iter__(self):
    return self

  def __next__(self):
    if self._stop.is_set():
      raise StopIteration
    item = self._buffer.get()
    if item is _END:
      self.close()
      raise StopIteration
    if isinstance(item, _Failure):
      self.close()
      raise item.error
    return item

  def close(self, timeout: float = 60.0) -> None:
    """Stops the worker and waits for it: no thread is left inside JAX or tf.data at exit."""
    self._stop.set()
    if self._thread.is_alive() and self._thread is not threading.current_thread():
      self._thread.join(timeout)


def prefetch_to_device(batches, sharding, size: int = 2) -> _DevicePrefetcher:
  """Global ``jax.Array`` batches, ``size`` of them placed ahead by a background thread.

  Args:
    batches: an iterator of this host's numpy batches (``source.iterate(step)``).
    sharding: the batch sharding (e.g. ``NamedSharding(mesh, P("data"))``); each host's batch
      becomes its slice of the global array (``jax.make_array_from_process_local_data``).
    size: batches kept on device ahead of the consumer.

  Returns an iterator; call its ``close()`` when done (it stops and joins the thread, so no
  thread is left inside JAX or tf.data when the interpreter exits). An error in the input is
  re-raised in the consumer. Multi-host: every host calls this with its own
  ``source.iterate(step)``; no collective runs in the thread.
  """
  return _DevicePrefetcher(batches, sharding, size)
