"""Benchmarks: functions that time the project's pieces and return Markdown tables.

  common.py             the machine line, timing of jitted functions and train steps
  views.py              view generation (augment.make_views)
  step.py               the train step: LooC vs MoCo vs supervised, FLOPs, memory
  pipeline.py           the host input pipeline vs the train step's consumption
  accelerator_check.py  the prepared check of a fresh GPU/TPU host (launch/gpu.sh check)
  compare_torch.py      the CPU train step side by side with a PyTorch one, and its convolutions
  torch_reference.py    that PyTorch LooC step (host PIL views; needs the optional torch)

Commands (they define their flags only when run, so importing a benchmark defines none):
``python -m leave_one_out.benchmark --what=views|step|torch|torch_convs``,
``python -m leave_one_out.bench_input``, ``python -m leave_one_out.benchmarks.accelerator_check``. Figures, with the machine they ran on,
go in BENCHMARKS.md; none is asserted by a test.
"""
