"""The claims experiment (leave_one_out/experiments/claims.py, configs/claims.py).

The CI preset is run as its command is documented (a subprocess, one CPU device) and its
result must show the paper's qualitative ordering on the rotation probe (Table 1): MoCo keeps
rotation information, MoCo + rotation loses part of it, LooC and LooC++ keep it. "A keeps more
than B" means, in the run itself:

- paired by seed (the same seed gives both methods the same initialisation, data order and
  probe data), A beats B for every seed; and
- the gap of the means exceeds the margin: the larger of the two methods' spreads over seeds
  (half the range), as measured in the same run.

docs/claims.md reports the numbers and how far they sit from these thresholds.
"""

import json
import os
import subprocess
import sys
import tempfile

import pytest

from leave_one_out.experiments import claims

ROTATION_ORDER = (  # (keeps more rotation information, than)
    ("moco", "moco_rotation"),
    ("looc", "moco_rotation"),
    ("looc_pp", "moco_rotation"),
)


def test_presets_share_everything_but_the_method_fields():
  c = claims.load_config("full")
  cfgs = {m: claims.method_config(c.base, m, c.looc_spaces, seed=3) for m in c.methods}
  assert cfgs["moco"].augment.spaces == () and not cfgs["moco"].augment.rotation.enabled
  assert cfgs["moco_rotation"].augment.spaces == ()
  assert cfgs["moco_rotation"].augment.rotation.enabled
  assert cfgs["looc"].augment.spaces == tuple(c.looc_spaces) == ("rotation",)
  assert cfgs["looc"].augment.rotation.enabled and cfgs["looc"].augment.color.enabled
  assert cfgs["looc_pp"].model.looc_plus_plus and not cfgs["looc"].model.looc_plus_plus
  for cfg in cfgs.values():  # same budget, data, optimizer and seed for every method
    assert cfg.seed == 3
    assert cfg.train.to_dict() == c.base.train.to_dict()
    assert cfg.data.to_dict() == c.base.data.to_dict()
    assert cfg.data.synthetic_light > 0  # the dataset's orientation cue is on
  with pytest.raises(ValueError, match="preset"):
    claims.load_config("huge")
  with pytest.raises(ValueError, match="unknown method"):
    claims.method_config(c.base, "simclr", c.looc_spaces, seed=0)


def test_aggregate_and_table():
  agg = claims.aggregate([{"rotation": 0.5, "shape": 0.2}, {"rotation": 0.7, "shape": 0.4}])
  assert agg["rotation"] == pytest.approx({"mean": 0.6, "spread": 0.1, "n": 2})
  table = claims.format_table({"moco": {"feature": "backbone", "metrics": agg}},
                              {"rotation": 0.25, "shape": 1 / 6})
  assert "| MoCo (colour) | backbone | 60.0 ± 10.0 | 30.0 ± 10.0 | - | - |" in table
  assert "chance: rotation 25.0, shape 16.7" in table


def _command(*args):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device, as documented
  return subprocess.run([sys.executable, "-m", "leave_one_out.experiments.claims", *args],
                        env=env, capture_output=True, text=True, timeout=1200, check=False)


def test_preset_and_overrides_do_not_mix():
  proc = _command("--preset=ci", "--claims.base.train.num_steps=5", "--workdir=/nonexistent")
  assert proc.returncode != 0
  assert "--preset cannot be combined with --claims.base.train.num_steps" in proc.stderr


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("claims_ci")
  cache = os.path.join(tempfile.gettempdir(), "leave_one_out_test_jax_cache")
  proc = _command("--preset=ci", f"--workdir={workdir}", f"--compilation_cache_dir={cache}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, json.loads((workdir / "claims.json").read_text()), proc.stdout


def test_ci_preset_writes_the_table_json_and_chart(ci_run):
  workdir, out, stdout = ci_run
  assert out["preset"] == "ci" and out["seeds"] == [0, 1]
  assert set(out["summary"]) == {"moco", "moco_rotation", "looc", "looc_pp"}
  assert out["summary"]["looc_pp"]["feature"] == "looc++"
  for s in out["summary"].values():
    assert set(s["metrics"]) == {"rotation", "shape", "color", "texture"}
    for a in s["metrics"].values():
      assert 0.0 <= a["mean"] <= 1.0 and a["n"] == 2
  for name in ("claims.json", "claims.md", "claims.png"):
    assert (workdir / name).stat().st_size > 0
  assert out["table"] in stdout and "LooC++" in out["table"]
  assert os.path.isdir(workdir / "looc_pp" / "seed1" / "checkpoints")


def keeps_more(runs: dict, summary: dict, better: str, worse: str, metric: str) -> list[str]:
  """Why ``better`` does not keep more of ``metric`` than ``worse`` (empty: it does)."""
  failures = []
  for seed, run in runs[worse].items():
    b, w = runs[better][seed]["metrics"][metric], run["metrics"][metric]
    if not b > w:
      failures.append(f"seed {seed}: {better} {b:.3f} <= {worse} {w:.3f}")
  b, w = summary[better]["metrics"][metric], summary[worse]["metrics"][metric]
  margin = max(b["spread"], w["spread"])
  if not b["mean"] - w["mean"] > margin:
    failures.append(f"mean gap {b['mean'] - w['mean']:.3f} <= margin {margin:.3f}")
  return failures


def test_keeps_more_is_paired_by_seed_and_beats_the_seed_spread():
  def run(*accs):
    runs = {str(i): {"metrics": {"rotation": a}} for i, a in enumerate(accs)}
    return runs, {"metrics": claims.aggregate([r["metrics"] for r in runs.values()])}
  (a, sa), (b, sb), (c, sc) = run(0.9, 0.8), run(0.7, 0.75), run(0.85, 0.6)
  summary = {"a": sa, "b": sb, "c": sc}
  assert keeps_more({"a": a, "b": b}, summary, "a", "b", "rotation") == []
  assert keeps_more({"b": b, "a": a}, summary, "b", "a", "rotation") != []
  # c ties b on average (0.725), loses for seed 1, and its spread (0.125) exceeds the mean gap.
  assert len(keeps_more({"c": c, "b": b}, summary, "c", "b", "rotation")) == 2


@pytest.mark.parametrize("better, worse", ROTATION_ORDER)
def test_ci_preset_shows_the_rotation_ordering(ci_run, better, worse):
  _, out, _ = ci_run
  assert keeps_more(out["runs"], out["summary"], better, worse, "rotation") == [], out["table"]


def test_ci_preset_keeps_colour_for_every_method(ci_run):
  # Colour jitter (MoCo v2 strength) is on for every method and no method loses the 6-way colour
  # label: the colour half of the paper's story (fine-grained tasks) does not show on this
  # coarse probe (docs/claims.md), so the check is that colour stays far above chance (16.7%).
  _, out, _ = ci_run
  for method, s in out["summary"].items():
    assert s["metrics"]["color"]["mean"] > 0.9, (method, out["table"])
