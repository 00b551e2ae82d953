"""The auxiliary objectives (AugSelf, E-SSL, CASSLE): their targets from known parameters, their
terms in the one train step, sharding, the plain step when off, and the runs they make."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import augment
from leave_one_out import config as config_lib
from leave_one_out import data as data_lib
from leave_one_out import extract
from leave_one_out import objectives
from leave_one_out import pretrained
from leave_one_out import render
from leave_one_out import sharding
from leave_one_out import train
from leave_one_out.experiments import claims as claims_lib
from leave_one_out.objectives import augself
from leave_one_out.objectives import cassle
from leave_one_out.objectives import essl
from leave_one_out.run import logs
from tests.helpers import CLI_TINY
from tests.helpers import tiny_config
from tests.helpers import write_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOCO_V2 = config_lib.default_config().augment  # jitter strengths 0.4, 0.4, 0.4, 0.1


def _group(**leaves):
  return {k: jnp.asarray(v) for k, v in leaves.items()}


def _view(crop, flip, color_apply, factors, gray, blur_apply, sigma, k):
  """One view's parameters for one image (leaves [1])."""
  b, c, s, h = factors
  return {
    "crop": _group(y0=[crop[0]], x0=[crop[1]], h=[crop[2]], w=[crop[3]]),
    "flip": _group(apply=[flip]),
    "color": _group(
      apply=[color_apply],
      brightness=[b],
      contrast=[c],
      saturation=[s],
      hue=[h],
      order=[[0, 1, 2, 3]],
      gray=[gray],
    ),
    "blur": _group(apply=[blur_apply], sigma=[sigma]),
    "rotation": _group(k=[k]),
  }


# q: box (y0, x0, h, w) = (0.1, 0.2, 0.5, 0.4), flipped, jitter (1.2, 0.8, 1.0, +0.05) applied,
# blurred with sigma 1.5, rotated 3 quarter turns. k: box (0.3, 0.0, 0.6, 0.8), not flipped, no
# jitter (its factors are drawn but unused), no blur, 2 quarter turns.
Q = _view((0.1, 0.2, 0.5, 0.4), True, True, (1.2, 0.8, 1.0, 0.05), False, True, 1.5, 3)
K = _view((0.3, 0.0, 0.6, 0.8), False, False, (1.3, 0.7, 1.1, -0.02), True, False, 0.7, 2)
GROUPS = tuple(augself.GROUPS)


def test_augself_targets_are_the_hand_computed_differences_with_its_flip_quirk():
  # Centres: q (0.35, 0.4), k (0.6, 0.4). AugSelf's code mirrors both x-centres with the first
  # view's flip: q first (flipped): 0.6 - 0.6 = 0; k first (not flipped): 0.4 - 0.4 = 0.
  first = augself.targets(Q, K, MOCO_V2, GROUPS, "first")
  np.testing.assert_allclose(first["crop"], [[-0.25, 0.0, -0.1, -0.4]], atol=1e-6)
  back = augself.targets(K, Q, MOCO_V2, GROUPS, "first")
  np.testing.assert_allclose(back["crop"], [[0.25, 0.0, 0.1, 0.4]], atol=1e-6)
  # Each centre mirrored with its own flip: q 0.6 against k 0.4.
  own = augself.targets(Q, K, MOCO_V2, GROUPS, "own")
  np.testing.assert_allclose(own["crop"], [[-0.25, 0.2, -0.1, -0.4]], atol=1e-6)
  np.testing.assert_allclose(augself.targets(K, Q, MOCO_V2, GROUPS, "own")["crop"][0, 1], -0.2)
  # Colour: ((1.2 - 1) / 0.8, (0.8 - 1) / 0.8, 0, 0.05 / 0.2) minus k's zeros (not applied).
  np.testing.assert_allclose(first["color"], [[0.25, -0.25, 0.0, 0.25]], atol=1e-6)
  np.testing.assert_allclose(first["blur"], [[1.5]])
  np.testing.assert_array_equal(first["flip"], [[0.0]])  # flipped differently
  np.testing.assert_array_equal(first["rotation"], [1])  # (3 - 2) mod 4
  np.testing.assert_array_equal(back["rotation"], [3])  # (2 - 3) mod 4


def test_colour_factors_divide_by_their_ranges_width_and_vanish_where_not_applied():
  cfg = MOCO_V2.copy_and_resolve_references()
  cfg.color.brightness = 1.5  # range [0, 2.5]: (2.0 - 1) / 2.5
  cfg.color.hue = 0.0  # no hue jitter: encoded 0
  color = _group(
    apply=[True, False],
    brightness=[2.0, 2.0],
    contrast=[1.4, 1.4],
    saturation=[0.6, 0.6],
    hue=[0.1, 0.1],
  )
  np.testing.assert_allclose(
    augment.color_factors(color, cfg), [[0.4, 0.5, -0.5, 0.0], [0, 0, 0, 0]], atol=1e-6
  )


def test_cassle_descriptor_is_the_hand_computed_vector_in_sorted_group_order():
  shift = jnp.array([[0.1, 0.2, 0.3]])
  d = cassle.descriptor(Q, list(reversed(cassle.GROUPS)), MOCO_V2, shift)
  expected = (
    [1.5]  # blur: sigma
    + [0.25, -0.25, 0.0, 0.25]  # color
    + [0.1, 0.2, 0.3]  # color_diff
    + [0.35, 0.6, 0.5, 0.4]  # crop: cy, cx mirrored by its own flip (1 - 0.4), h, w
    + [1.0]  # flip
    + [0.0]  # grayscale
    + [0.0, 0.0, 0.0, 1.0]  # rotation k = 3
  )
  np.testing.assert_allclose(d, [expected], atol=1e-6)
  k = cassle.descriptor(K, ("crop", "color", "grayscale", "blur"), MOCO_V2)
  np.testing.assert_allclose(k, [[0.0, 0, 0, 0, 0, 0.6, 0.4, 0.6, 0.8, 1.0]], atol=1e-6)
  np.testing.assert_array_equal(cassle.identity(("crop", "blur"), 2), [[0, 0.5, 0.5, 1, 1]] * 2)


def test_cassle_colour_shift_is_the_mean_before_minus_after_the_jitter():
  # A flat image (0.2, 0.4, 0.6): brightness 1.5 alone moves it to (0.3, 0.6, 0.9) wherever the
  # crop falls; grayscale (after the jitter) does not count; no jitter, no shift.
  images = jnp.broadcast_to(jnp.array([0.2, 0.4, 0.6]), (2, 12, 12, 3))
  view = jax.tree.map(
    lambda a, b: jnp.stack([jnp.concatenate([a, b])]),
    _view((0.1, 0.2, 0.5, 0.4), True, True, (1.5, 1.0, 1.0, 0.0), True, True, 1.5, 1),
    _view((0.0, 0.0, 1.0, 1.0), False, False, (1.5, 1.0, 1.0, 0.0), False, False, 0.7, 0),
  )  # leaves [V=1, B=2]
  cfg = MOCO_V2.copy_and_resolve_references()
  cfg.image_size = 8
  cfg.color.random_order = False
  shift = jax.jit(lambda x, p: cassle.color_shift(x, p, cfg))(images, view)
  np.testing.assert_allclose(shift, [[[-0.1, -0.2, -0.3], [0.0, 0.0, 0.0]]], atol=1e-5)


def test_essl_rotates_one_rendered_view_of_each_image_four_ways():
  c = essl.default_config()
  c.image_size = 10
  images = jax.random.randint(jax.random.key(0), (3, 20, 16, 3), 0, 256).astype(jnp.uint8)
  aspect = jnp.array([0.8, 1.0, 1.3])
  rng = jax.random.key(5)
  x, labels = jax.jit(lambda *a: essl.rotated_views(*a, c, MOCO_V2))(rng, images, aspect)
  view_cfg = essl.view_config(c, MOCO_V2)
  assert (view_cfg.crop.scale, view_cfg.blur.prob, view_cfg.rotation.enabled) == (
    (0.05, 0.14),
    0.1,
    False,
  )
  params = jax.jit(lambda r, a: augment.sample_params(r, 3, view_cfg, a))(rng, aspect)
  assert not np.any(params["rotation"]["k"])
  views = np.asarray(jax.jit(lambda x, p: render.render(x, p, view_cfg))(images, params))
  np.testing.assert_array_equal(labels, [0, 1, 2, 3] * 3)
  for row, (b, k) in enumerate((b, k) for b in range(3) for k in range(4)):
    np.testing.assert_allclose(x[row], np.rot90(views[b], k, axes=(0, 1)), atol=1e-6)


# ------------------------------------------------------------------ the train step


def _step_results(cfg, devices=None, steps=1):
  mesh = sharding.make_mesh(devices)
  source = data_lib.create_train_source(cfg)
  compiled = train.programs(cfg, mesh, source.steps_per_epoch)
  state = compiled.new_state(cfg.seed)
  put = NamedSharding(mesh, P(sharding.DATA_AXIS))
  metrics = []
  for i in range(steps):
    batch = jax.tree.map(lambda x: jax.make_array_from_process_local_data(put, x), source.batch(i))
    state, m = compiled.step(state, batch)
    metrics.append(jax.device_get(m))
  return jax.device_get(state), metrics


def _with(objective: str, cfg):
  cfg = cfg.copy_and_resolve_references()
  section = cfg.objectives[objective]
  if objective == "cassle":
    section.enabled = True
  else:
    section.weight = 0.5
  if objective == "essl":
    section.image_size = 8
  if objective == "augself":
    section.groups = ("crop", "color", "rotation")
  return cfg


def _moco():
  return tiny_config(spaces=(), steps=2)


@pytest.mark.parametrize("objective", ["augself", "essl"])
def test_a_term_adds_weight_times_its_loss_and_its_gradient_reaches_the_backbone(objective):
  """On MoCo here; on LooC with a queue and shuffle-BN in the sharded test below."""
  plain, (pm,) = _step_results(_moco(), jax.devices()[:1])
  state, (m,) = _step_results(_with(objective, _moco()), jax.devices()[:1])
  # Same initial backbone and heads, so the contrastive part is the plain step's ...
  np.testing.assert_array_equal(m["loss_per_space"], pm["loss_per_space"])
  np.testing.assert_allclose(m["loss"], pm["loss"] + 0.5 * m[f"{objective}/loss"], rtol=1e-6)
  assert np.isfinite(m[f"{objective}/loss"]) and m[f"{objective}/loss"] > 0
  # ... and the backbone moved differently: the term's gradient reached it.
  moved = [
    not np.array_equal(a, b)
    for a, b in zip(
      jax.tree.leaves(plain.params["backbone"]), jax.tree.leaves(state.params["backbone"])
    )
  ]
  assert all(moved)
  head = state.params[{"augself": "head_augself", "essl": "head_rotation"}[objective]]
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(head))


def test_cassle_conditions_both_encoders_and_trains_its_embedding():
  cfg = _with("cassle", _moco())
  first = train.programs(cfg, sharding.make_mesh(jax.devices()[:1]), 4).new_state(cfg.seed)
  state, (m,) = _step_results(cfg, jax.devices()[:1])
  f = train.programs(cfg, sharding.make_mesh(jax.devices()[:1]), 4).model.feature_dim
  assert state.params["head0"]["fc1"]["kernel"].shape[0] == f + cfg.objectives.cassle.width
  for a, b, e in zip(
    *(jax.tree.leaves(s["head_condition"]) for s in (first.params, state.params, state.ema_params))
  ):
    assert not np.array_equal(a, b)  # the embedding MLP got a gradient ...
    assert not np.array_equal(a, e)  # ... and the key encoder's copy follows it
  assert 0.0 < m["cassle/condition_share"] < 1.0
  # The heads read the descriptor: two descriptors give two embeddings of one image.
  model = train.programs(cfg, sharding.make_mesh(jax.devices()[:1]), 4).model
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  x = jnp.full((2, 16, 16, 3), 0.5)
  groups = cfg.objectives.cassle.groups
  d = cassle.identity(groups, 2).at[:, -5].set(0.3)  # the crop's centre y
  embed = jax.jit(lambda v, x, d: model.apply(v, x, train=False, condition=d)["embeddings"])
  plain = jax.jit(lambda v, x: model.apply(v, x, train=False)["embeddings"])(variables, x)
  assert np.abs(np.asarray(plain - embed(variables, x, d))).max() > 1e-4
  np.testing.assert_allclose(embed(variables, x, cassle.identity(groups, 2)), plain, atol=1e-6)


def test_weight_zero_is_exactly_the_plain_step():
  """Off (weight 0, ``enabled`` False) builds nothing: no head, no view, no key stream; the
  state and metrics are bit for bit the plain step's, whatever the objectives' other fields."""
  cfg = _moco()
  cfg.objectives.augself.groups = ("blur", "flip")
  cfg.objectives.augself.hidden = 7
  cfg.objectives.essl.image_size = 8
  cfg.objectives.cassle.groups = ("rotation",)
  assert objectives.active(cfg) == []
  plain, pm = _step_results(_moco(), jax.devices()[:1], steps=2)
  off, om = _step_results(cfg, jax.devices()[:1], steps=2)
  assert jax.tree.structure(off) == jax.tree.structure(plain)
  for a, b in zip(jax.tree.leaves((off, om)), jax.tree.leaves((plain, pm))):
    np.testing.assert_array_equal(a, b)


def _all_three(spaces, queue):
  cfg = tiny_config(spaces=spaces, steps=2)
  cfg.objectives.augself.weight = 0.5
  cfg.objectives.essl.weight = 0.4
  cfg.objectives.essl.image_size = 8
  cfg.objectives.cassle.enabled = True
  cfg.loss.queue_size = queue
  cfg.model.bn_groups = 2  # with the queue: shuffle-BN in 2 groups on 1 and on 8 devices
  return cfg


@pytest.mark.slow
def test_eight_devices_match_one_device_with_every_objective():
  """LooC++ (a rotation space: two res5 stages) with a queue and shuffle-BN, AugSelf, E-SSL and
  CASSLE all on."""
  cfg = _all_three(("rotation",), 32)
  cfg.model.looc_plus_plus = True
  one, m1 = _step_results(cfg, jax.devices()[:1], steps=2)
  eight, m8 = _step_results(cfg, jax.devices(), steps=2)
  for a, b in zip(m1, m8):
    for key in ("loss", "augself/loss", "essl/loss", "cassle/condition_share"):
      np.testing.assert_allclose(a[key], b[key], rtol=2e-4, err_msg=key)
    np.testing.assert_allclose(a["essl/top1"], b["essl/top1"], atol=1e-6)
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(eight.params)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
  for a, b in zip(jax.tree.leaves(one.batch_stats), jax.tree.leaves(eight.batch_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_evaluation_load_and_export_work_on_a_run_with_every_objective(tmp_path):
  cfg = _all_three((), 0)
  saved = write_checkpoint(str(tmp_path / "run"), cfg)
  model, variables, config = pretrained.load_pretrained(str(tmp_path / "run"))
  assert (model.augself_groups, model.rotation_bottleneck) == ("crop,color", 128)
  assert model.condition_groups == "blur,color,color_diff,crop,grayscale"
  for name in ("head_augself", "head_rotation", "head_condition"):
    for a, b in zip(
      jax.tree.leaves(variables["params"][name]), jax.tree.leaves(saved.params[name])
    ):
      np.testing.assert_array_equal(a, b)
  images = np.random.RandomState(0).randint(0, 256, (5, 20, 20, 3)).astype(np.uint8)
  kinds = extract.feature_kinds(model)
  assert kinds == ["backbone", "embedding:0"]
  features = {
    k: extract.extract_features(model, variables, images, kind=k, image_size=16) for k in kinds
  }
  out = pretrained.export(str(tmp_path / "run"), str(tmp_path / "run.msgpack"))
  model2, variables2, _ = pretrained.load_pretrained(out)
  assert model2 == model
  for k in kinds:
    again = extract.extract_features(model2, variables2, images, kind=k, image_size=16)
    np.testing.assert_allclose(again, features[k], rtol=1e-5, atol=1e-6)
  assert config.objectives.cassle.enabled


def test_progress_line_shows_each_objective_by_name():
  scalars = {
    "loss": 5.0,
    "loss/invariant": 4.9,
    "top1/invariant": 0.5,
    "augself/loss": 0.25,
    "augself/crop": 0.1,
    "augself/color": 0.15,
    "essl/loss": 1.2,
    "essl/top1": 0.48,
    "cassle/condition_share": 0.12,
  }
  line = logs.format_line(10, 100, 10, scalars, ["invariant"], 0.0, 0.0)
  assert "augself 0.250 (crop 0.100, color 0.150)" in line
  assert "essl 1.200/48%" in line
  assert "cassle condition_share 0.120" in line


@pytest.mark.parametrize(
  "field,value,message",
  [
    ("augself.groups", ("crop", "scale"), "config.objectives.augself.groups has unknown group"),
    ("augself.weight", -1.0, "config.objectives.augself.weight must be a number >= 0"),
    ("essl.image_size", 4, "config.objectives.essl.image_size must be an integer >= 8, got 4"),
    ("essl.crop_scale", (0.5, 0.1), "config.objectives.essl.crop_scale must be a pair"),
    ("cassle.groups", (), "config.objectives.cassle.groups must be a non-empty tuple"),
    ("cassle.depth", 0, "config.objectives.cassle.depth must be an integer >= 1, got 0"),
  ],
)
def test_bad_objective_fields_are_errors_naming_them(field, value, message):
  cfg = config_lib.default_config()
  section, name = field.split(".")
  cfg.objectives[section][name] = value
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    config_lib.validate(cfg)


def test_an_augself_group_of_a_disabled_augmentation_is_an_error():
  cfg = config_lib.default_config()
  cfg.objectives.augself.weight = 0.5
  cfg.objectives.augself.groups = ("crop", "blur")
  cfg.augment.blur.enabled = False
  with pytest.raises(ValueError, match="augself.groups has 'blur' but config.augment.blur"):
    config_lib.validate(cfg)


@pytest.mark.slow
@pytest.mark.parametrize(
  "name,shown", [("augself", "augself/crop"), ("essl", "essl/top1"), ("cassle", "cassle/")]
)
def test_each_objective_config_trains_and_logs_its_loss_by_name(tmp_path, name, shown):
  env = dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=2",
    JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
  )
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "leave_one_out.main",
      f"--config=configs/{name}.py",
      f"--workdir={tmp_path}",
      "--config.train.num_steps=5",
      "--config.log_every_steps=5",
      *CLI_TINY,
      *(["--config.objectives.essl.image_size=8"] if name == "essl" else []),
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  assert f"| {name} " in run.stderr  # the progress line
  (logged,) = logs.read_metrics(tmp_path)
  assert logged["step"] == 5
  assert any(k.startswith(shown) for k in logged), sorted(logged)


@pytest.mark.parametrize("name", ["augself", "essl", "cassle"])
def test_imagenet100_recipes_turn_on_one_objective_in_its_papers_setting(name):
  cfg = config_lib.load_file(os.path.join(ROOT, "configs", f"{name}_in100_r50.py"))
  config_lib.validate(cfg, num_devices=8)
  assert objectives.active(cfg) == [name]
  assert (cfg.model.architecture, cfg.augment.image_size, cfg.train.batch_size) == (
    "resnet50",
    224,
    256,
  )
  assert (cfg.train.base_lr, cfg.train.weight_decay, cfg.augment.spaces) == (0.03, 1e-4, ())
  papers = {
    "augself": (cfg.objectives.augself.weight, cfg.loss.queue_size, cfg.model.key_bn),
    "essl": (cfg.objectives.essl.weight, cfg.objectives.essl.image_size, cfg.loss.queue_size),
    "cassle": (cfg.objectives.cassle.depth, cfg.loss.queue_size, cfg.model.key_bn),
  }
  assert (
    papers[name]
    == {
      "augself": (0.5, 65_536, "global"),
      "essl": (0.4, 96, 16_384),
      "cassle": (6, 65_536, "global"),
    }[name]
  )


def test_a_claims_row_turns_an_objective_on_with_one_methods_entry():
  c = config_lib.load_file(os.path.join(ROOT, "configs", "claims.py"), "ci")
  with c.unlocked():
    c.methods.moco_essl = dict(
      title="MoCo + E-SSL", rotation=True, overrides=(("objectives.essl.weight", 0.4),)
    )
    c.methods.typo = dict(title="?", overrides=(("objectives.essl.wieght", 0.4),))
  cfg = claims_lib.method_config(c, "digits", "moco_essl", seed=0)
  assert objectives.active(cfg) == ["essl"] and cfg.objectives.essl.weight == 0.4
  config_lib.validate(cfg)
  with pytest.raises(ValueError, match="'objectives.essl.wieght' names no field"):
    claims_lib.method_config(c, "digits", "typo", seed=0)
