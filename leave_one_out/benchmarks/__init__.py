"""Benchmarks: functions that time the project's pieces and return Markdown tables.

  timing.py             the machine line, timing of jitted functions and train steps
  views.py              view generation (augment.make_views)
  step.py               the train step: LooC vs MoCo vs supervised, FLOPs, memory
  host_input.py         the host input pipeline vs the train step's consumption
  accelerator_check.py  the prepared check of a fresh GPU/TPU host (launch/gpu.sh check)
  compare_torch.py      the CPU train step side by side with a PyTorch one, and its convolutions
  torch_reference.py    that PyTorch LooC step (host PIL views; needs the optional torch)

One command runs them all (``__main__.py``; flags are defined only when it runs, so importing a
benchmark defines none): ``python -m leave_one_out.benchmarks --what=views|step|torch|
torch_convs|input|accelerator_check``. Figures, with the machine they ran on, go in
BENCHMARKS.md; none is asserted by a test.
"""
