r"""The digits condition's pilot: one seed, the gate quantities only, and the time per row.

  python -m leave_one_out.experiments.pilot --workdir=/tmp/looc_pilot \
      [--claims.base.data.image_size=32 --claims.base.augment.image_size=24 \
       --claims.base.train.num_steps=200 --claims.base.model.width=8]

docs/preregistration_digits.md lets a pilot on one seed (100, not an analysis seed) set only the
canvas size S (and the view size), the number of steps N and the width W, to pass the gates
within the time budget, reading only the gate quantities. This runs exactly those: the digit
probe of random init, supervised and MoCo + rotation (G1, G2); random init's rotation probe
(G4); the own-view top-1 of every LooC row's spaces, a training metric (G3; those rows are not
evaluated at all). No other row runs and no other probe is computed, so no hypothesis's gap can
be read. It refuses a config that differs from the full preset in anything but those four
fields and the seed, and prints the gate quantities and each row's wall and CPU seconds (the
full preset trains 9 rows x 6 seeds and calibrates 6 random inits). The flags are the claims
command's (``leave_one_out.experiments.claims``); ``--claims`` defaults to the full preset, and
``--claims.rows`` limits the pilot to some of its rows.
"""

from __future__ import annotations

import json
import os
import time

from absl import app
from absl import flags

from leave_one_out.experiments import analysis
from leave_one_out.experiments import claims
from leave_one_out.experiments import report
from leave_one_out.run import loop
from leave_one_out.run import workdir as workdir_lib

SEED = 100  # the pre-registration's pilot seed
EVALUATED = {"random_init": True, "supervised": False, "moco_rotation": False}  # row: rotation
TRAINED_ONLY = ("looc_rotation", "looc_color", "looc_color_rotation", "looc_pp")
ALLOWED = ("data.image_size", "augment.image_size", "train.num_steps", "model.width")


def check_pilot(c) -> None:
  """UsageError unless ``c`` is the full preset but for ``ALLOWED`` fields of its base (its
  seeds and rows are not read: the pilot runs seed 100 and its own rows)."""
  full = claims.load_config("full")
  changed = workdir_lib.config_differences(
    json.loads(full.base.to_json()), json.loads(c.base.to_json())
  )
  changed = [d for d in changed if d.split(":")[0] not in ALLOWED]
  rest = lambda x: {
    k: v for k, v in json.loads(x.to_json()).items() if k not in ("base", "seeds", "rows")
  }
  if changed or rest(c) != rest(full):
    raise app.UsageError(
      f"the pilot may set only {ALLOWED} (docs/preregistration_digits.md, 'Pilot'); this config "
      f"also changes {changed or 'fields outside claims.base'}"
    )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  c = flags.FLAGS["claims"].value
  check_pilot(c)
  workdir_root = flags.FLAGS["workdir"].value
  cond = c.conditions.digits
  runs, times = {}, {}
  for row in (r for r in (*EVALUATED, *TRAINED_ONLY) if r in c.rows):
    cfg = claims.method_config(c, "digits", row, SEED)
    workdir = os.path.join(workdir_root, row)
    t0, cpu0 = time.perf_counter(), time.process_time()
    if row in EVALUATED:
      e = claims.eval_config(c, "digits", cfg)
      e.dataset.labels, e.dataset.primary_label = ("digit",), "digit"
      e.rotation.enabled = EVALUATED[row]
      e.sensitivity.enabled = False
      summary, results = claims.run_one(cfg, e, workdir, c.methods[row], cond.primary_label)
      metrics = claims.run_metrics(results, claims.probed_kind(cfg))
    else:
      summary = loop.pretrain(cfg, workdir)
      metrics = {}
    own = {k: v for k, v in summary.items() if k.startswith("own_top1/")}
    runs[row] = {SEED: {"metrics": metrics, "train": own}}
    times[row] = (time.perf_counter() - t0, time.process_time() - cpu0)
  gates = analysis.check_gates(runs, cond.gates, c.methods)
  summary = {row: {"title": c.methods[row].title} for row in runs}
  print(
    f"pilot, seed {SEED}: canvas {c.base.data.image_size}, views {c.base.augment.image_size}, "
    f"{c.base.train.num_steps} steps, width {c.base.model.width}"
  )
  print(report.format_gates({"analysis": gates, "summary": summary}))
  for row, (wall, cpu) in times.items():
    print(f"{row}: {wall:.0f} s wall, {cpu:.0f} s CPU")


if __name__ == "__main__":
  app.run(main)
