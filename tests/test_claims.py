"""The claims experiment (leave_one_out/experiments/claims.py, configs/claims.py).

The CI preset is run as its command is documented (a subprocess, one CPU device), and its
pre-registered hypothesis must hold in the run itself: on the lit embedded dataset, LooC with a
rotation space keeps more rotation information than MoCo + rotation, paired by seed, with a
two-sided paired t-test p < 0.05 (docs/claims.md reports the numbers).
"""

import json
import os
import subprocess
import sys

import pytest

from leave_one_out.experiments import claims

# Its module-scoped fixtures are built once: every test of the file runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_claims")


def test_rows_share_everything_but_their_method_fields():
  c = claims.load_config("full")
  cfgs = {m: claims.method_config(c, "lit", m, seed=3) for m in c.rows}
  assert not cfgs["moco"].augment.spaces and not cfgs["moco"].augment.rotation.enabled
  for m in ("moco_rotation", "moco_rotation_keys"):
    assert cfgs[m].augment.spaces == () and cfgs[m].augment.rotation.enabled
  # The compute-matched control has as many key views per image as LooC (rotation).
  assert cfgs["moco_rotation_keys"].augment.extra_keys == 1
  assert 1 + cfgs["moco_rotation_keys"].augment.extra_keys == 1 + len(
    cfgs["looc_rotation"].augment.spaces
  )
  assert cfgs["looc_rotation"].augment.spaces == ("rotation",)
  assert cfgs["looc_color_rotation"].augment.spaces == ("color", "rotation")
  assert cfgs["looc_pp"].model.looc_plus_plus and not cfgs["looc_rotation"].model.looc_plus_plus
  assert cfgs["looc_texture"].augment.texture.enabled
  assert not cfgs["looc_rotation"].augment.texture.enabled
  assert not c.methods.random_init.pretrain
  for cfg in cfgs.values():  # same budget, data, optimizer, colour jitter and seed for every row
    assert cfg.seed == 3 and cfg.augment.color.enabled
    assert cfg.train.to_dict() == c.base.train.to_dict()
    assert cfg.data.to_dict() == c.base.data.to_dict()
    assert cfg.augment.color.to_dict() == c.base.augment.color.to_dict()
  with pytest.raises(ValueError, match="preset"):
    claims.load_config("huge")
  with pytest.raises(ValueError, match="unknown method"):
    claims.method_config(c, "lit", "simclr", seed=0)
  with pytest.raises(ValueError, match="unknown condition"):
    claims.method_config(c, "dark", "moco", seed=0)


@pytest.mark.parametrize("preset", ["full", "ci", "gpu"])
def test_every_row_of_every_preset_is_a_valid_config(preset):
  from leave_one_out import config as config_lib
  from leave_one_out import evaluate

  c = claims.load_config(preset)
  for condition in c.run_conditions:
    evaluate.validate_config(claims.eval_config(c, condition))
    for row in c.rows:
      config_lib.validate(claims.method_config(c, condition, row, 0))


def test_conditions_change_only_their_data():
  c = claims.load_config("full")
  lit = claims.method_config(c, "lit", "looc_rotation", 0)
  unlit = claims.method_config(c, "unlit", "looc_rotation", 0)
  fine = claims.method_config(c, "fine_color", "looc_rotation", 0)
  photos = claims.method_config(c, "photos", "looc_rotation", 0)
  assert lit.data.synthetic_light > 0 and unlit.data.synthetic_light == 0
  assert fine.data.synthetic_hue_jitter == 30.0 and lit.data.synthetic_hue_jitter == 10.0
  assert fine.data.synthetic_hue_bins == 24 and lit.data.synthetic_hue_bins == 0
  assert photos.data.name == "photos"
  for cfg in (unlit, fine, photos):
    assert cfg.augment.to_dict() == lit.augment.to_dict()
    assert cfg.model.to_dict() == lit.model.to_dict()
  assert claims.eval_config(c, "photos").dataset.labels == ("photo",)
  assert claims.eval_config(c, "fine_color").dataset.labels[0] == "hue"


def test_every_hypothesis_is_fixed_in_the_config_with_a_direction():
  c = claims.load_config("full")
  for name in c.run_conditions:
    hyps = c.conditions[name].hypotheses
    assert hyps, name
    for metric, a, direction, b in hyps:
      assert direction in ("greater", "less") and a in c.methods and b in c.methods
      assert metric == "rotation" or metric in c.conditions[name].labels
  assert c.analysis.alpha == 0.05 and len(c.seeds) >= 5
  assert (
    "hue",
    "looc_color_rotation",
    "greater",
    "moco_rotation",
  ) in c.conditions.fine_color.hypotheses


def test_analysis_is_paired_by_seed():
  c = claims.load_config("full")

  def runs(**rows):
    return {
      row: {str(s): {"metrics": {"rotation": v}} for s, v in enumerate(values)}
      for row, values in rows.items()
    }

  # Seed effects shared by both rows: a consistent 5-point gap is confirmed.
  r = runs(a=[0.95, 0.65, 0.85, 0.75, 0.55], b=[0.90, 0.60, 0.80, 0.70, 0.50])
  out = claims.analyse(r, (("rotation", "a", "greater", "b"),), "b", c.analysis)
  (h,) = out["hypotheses"]
  assert h["verdict"] == "confirmed" and h["p"] < 1e-6 and h["seeds"] == [0, 1, 2, 3, 4]
  assert h["mean_gap"] == pytest.approx(0.05)
  assert out["vs_reference"]["a"]["rotation"]["verdict"] is None
  # The other direction is contradicted; a hypothesis whose row did not run is left out.
  out = claims.analyse(
    r, (("rotation", "b", "greater", "a"), ("rotation", "x", "greater", "b")), "b", c.analysis
  )
  assert [h["verdict"] for h in out["hypotheses"]] == ["contradicted"]
  # Same means but shuffled seeds: no longer a consistent paired gap.
  r = runs(a=[0.95, 0.65, 0.85, 0.75, 0.55], b=[0.50, 0.90, 0.60, 0.80, 0.70])
  (h,) = claims.analyse(r, (("rotation", "a", "greater", "b"),), "b", c.analysis)["hypotheses"]
  assert h["verdict"] == "not shown"


def test_overview_puts_every_condition_side_by_side():
  from leave_one_out.experiments import report

  c = claims.load_config("full")
  out = {
    "seeds": [0, 1, 2],
    "reference": "moco_rotation",
    "conditions": {},
    "claims_config": json.loads(c.to_json()),
  }
  gaps = {"lit": 0.10, "fine_color": 0.0}
  for name, gap in gaps.items():
    runs = {}
    for row, shift in (("moco_rotation", 0.0), ("looc_rotation", gap)):
      runs[row] = {
        str(s): {
          "metrics": {"rotation": 0.6 + 0.1 * s + shift + 0.01 * (s == 1), "hue": 0.5, "shape": 0.3}
        }
        for s in range(3)
      }
    summary = {
      row: {
        "title": c.methods[row].title,
        "feature": "backbone",
        "metrics": claims.aggregate([r["metrics"] for r in per.values()]),
      }
      for row, per in runs.items()
    }
    out["conditions"][name] = {
      "description": name,
      "runs": runs,
      "summary": summary,
      "chance": {},
      "seconds": 1.0,
      "analysis": claims.analyse(runs, c.conditions[name].hypotheses, "moco_rotation", c.analysis),
    }
  text = report.format_overview(out)
  header, _, ref_row, looc_row = text.splitlines()
  assert header == (
    "| row | lit: rotation | lit: shape | fine_color: rotation | fine_color: hue (24 bins) |"
  )
  assert ref_row.startswith("| MoCo + rotation (mean ± sd) | 70.3 ± 10.0 | 30.0 ± 0.0 |")
  assert looc_row.startswith("| LooC (rotation) - ref. | +10.0 [")
  verdicts = report.format_verdicts(out).splitlines()
  assert verdicts[0] == "| hypothesis | lit | fine_color |"
  row = next(v for v in verdicts if v.startswith("| LooC (rotation) > MoCo + rotation (rot"))
  assert "| confirmed (+10.0, p<0.001) | not shown (+0.0," in row
  assert report.format_report(out).startswith("## Overview")


def _command(*args):
  # One device and XLA's optimisations, as the command is documented (conftest.py turns most of
  # them off for the suite's compile-bound tests; this one trains six small models).
  env = {
    k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_DISABLE_MOST_OPTIMIZATIONS")
  }
  return subprocess.run(
    [sys.executable, "-m", "leave_one_out.experiments.claims", *args],
    env=env,
    capture_output=True,
    text=True,
    timeout=1200,
    check=False,
  )


def test_preset_and_overrides_do_not_mix():
  proc = _command("--preset=ci", "--claims.base.train.num_steps=5", "--workdir=/nonexistent")
  assert proc.returncode != 0
  assert "--preset cannot be combined with --claims.base.train.num_steps" in proc.stderr


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("claims_ci")
  # The suite's compilation cache (conftest.py, or JAX_COMPILATION_CACHE_DIR where it is set).
  cache = os.environ["JAX_COMPILATION_CACHE_DIR"]
  proc = _command("--preset=ci", f"--workdir={workdir}", f"--compilation_cache_dir={cache}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, json.loads((workdir / "claims.json").read_text()), proc.stdout


@pytest.mark.slow
def test_ci_preset_writes_the_tables_json_and_chart(ci_run):
  workdir, out, stdout = ci_run
  assert out["preset"] == "ci" and out["seeds"] == [0, 1, 2, 3, 4]
  lit = out["conditions"]["lit"]
  assert set(lit["summary"]) == {"moco_rotation", "looc_rotation"}
  for s in lit["summary"].values():
    assert set(s["metrics"]) == {"rotation", "shape", "color", "texture"}
    for a in s["metrics"].values():
      assert 0.0 <= a["mean"] <= 1.0 and a["n"] == 5
  for name in ("claims.json", "claims.md", "claims.png"):
    assert (workdir / name).stat().st_size > 0
  assert out["report"] in stdout and "Pre-registered hypotheses" in out["report"]
  assert os.path.isdir(workdir / "lit" / "looc_rotation" / "seed4" / "checkpoints")


@pytest.mark.slow
def test_ci_preset_confirms_its_pre_registered_hypothesis(ci_run):
  _, out, _ = ci_run
  lit = out["conditions"]["lit"]
  (h,) = lit["analysis"]["hypotheses"]
  assert (h["metric"], h["a"], h["direction"], h["b"]) == (
    "rotation",
    "looc_rotation",
    "greater",
    "moco_rotation",
  )
  assert h["verdict"] == "confirmed", out["report"]
  assert h["p"] < 0.05 and h["ci"][0] > 0


def test_conditions_reach_their_data_through_the_registry():
  """Photos and fine hues are registered data sources: the run and its evaluation read them."""
  from leave_one_out import data
  from leave_one_out.data import photos
  from leave_one_out.evaluate import dataset

  c = claims.load_config("full")
  cfg = claims.method_config(c, "photos", "moco_rotation", 0)
  with cfg.unlocked():
    cfg.data.num_train = 128
  source = data.create_train_source(cfg)
  expected = photos.load("train", num_examples=128, image_size=32, seed=0)["image"]
  assert (source.images == expected).all()
  cfg = claims.method_config(c, "fine_color", "moco_rotation", 0)
  eval_cfg = claims.eval_config(c, "fine_color")
  with eval_cfg.unlocked():
    eval_cfg.dataset.num_train, eval_cfg.dataset.num_test = 64, 64
  train, test, labels, primary = dataset.load(eval_cfg, cfg)
  assert labels == ("hue", "color", "shape", "texture") and primary == "hue"
  assert train.num_classes["hue"] == 24
  assert (test.labels["hue"] // 4 == test.labels["color"]).all()
