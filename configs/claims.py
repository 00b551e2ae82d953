r"""The paper's claims at small scale: the digits condition (pre-registered in
docs/preregistration_digits.md) and the earlier shapes and photographs conditions.

Command (from the repository root; ``leave_one_out/experiments/claims.py`` runs it):

  python -m leave_one_out.experiments.claims [--preset=full|ci|gpu|mechanism|objectives] \
      [--conditions=digits] [--seeds=0,1,2,3,4,5] [--workdir=/tmp/looc_claims] \
      [--compilation_cache_dir=~/.cache/leave_one_out/jax]

Presets (measured runtimes and results: docs/claims.md):

- ``full``: the digits condition, every row, seeds 0-5. scikit-learn's handwritten digits drawn
  at a random size, position and ink hue on a dark canvas, split by source image
  (``leave_one_out.data.digits``): real strokes whose class a small network learns.
- ``ci``: the digits condition's H2 only (MoCo + rotation, LooC (rotation); 5 seeds, 12-px views
  of 16-px canvases, 300 steps), its budget fixed before the full preset's results were read;
  tests/test_claims.py runs it and requires the gate it measures (G3) and the verdict the full
  preset found.
- ``gpu``: the full design with seeds 0-19, plus a ResNet-18 arm with a 4,096-key queue and
  shuffle-BN (condition ``digits_resnet18``). Prepared for one H100, not run (no GPU here).
- ``mechanism``: the earlier conditions (the embedded shapes lit from above, evenly lit, with
  fine hues; patches of photographs), seeds 0-4: a mechanism check of the rotation space, not
  evidence about class learning (docs/claims.md says why).
- ``objectives``: the digits condition's full-preset budget and seeds with MoCo + rotation +
  AugSelf, MoCo + E-SSL and MoCo + rotation + CASSLE beside the gate rows, MoCo, MoCo +
  rotation and LooC (rotation) (a finished run in the same workdir is reused); added after the
  pre-registration, so exploratory only: no family, no verdict.

The analysis (``ANALYSIS``; docs/preregistration_digits.md for the digits condition):

- every row trains with the same config, budget and seeds; a row changes only the fields of its
  method (``METHODS``); the same seed gives every row the same initialisation, data order and
  probe data, so rows are compared *paired by seed*;
- gates first (``GATES``): a failed gate makes the condition "uninformative" and its hypotheses
  "not tested (gate failed)";
- each condition's hypotheses are one family: one-sided paired t-tests of the mean per-seed gap
  against a margin (0, or -2 points for the non-inferiority H3), Holm's correction over the
  family at alpha 0.05, two-sided 95% t intervals and one-sided 95% bounds;
- every other comparison (every row against MoCo + rotation on every metric) is exploratory:
  two-sided paired t-tests with t intervals, no correction, no verdict.

Override any field with ``--claims=configs/claims.py:<preset> --claims.path=value``, e.g.
``--claims.base.train.num_steps=1000`` or ``--claims.rows='("moco_rotation","looc_rotation")'``.
"""

import ml_collections

from leave_one_out import config as config_lib
from leave_one_out import evaluate

PRESETS = ("full", "ci", "gpu", "mechanism", "objectives")
ANALYSIS = {
  "alpha": 0.05,  # family-wise, Holm's step-down over a condition's hypotheses
  "confidence": 0.95,  # two-sided t intervals and one-sided t bounds
}

# A row: the fields its method changes in the shared config. ``baseline``: "random_init"
# (no training step; BatchNorm statistics calibrated on training views) or "supervised"
# (cross-entropy on the condition's primary label, same backbone and budget), both in
# leave_one_out/experiments/baselines.py; none = contrastive pretraining (run.loop). Any other
# field a row needs: ``overrides``, (("section.field", value), ...). Adding a row is one entry.
# An auxiliary objective is an override too: (("objectives.augself.weight", 0.5),)
# (config.objectives, docs/objectives.md).
METHODS = {
  "random_init": dict(title="random init", baseline="random_init"),
  "supervised": dict(title="supervised", baseline="supervised"),
  "moco": dict(title="MoCo"),
  "moco_rotation": dict(title="MoCo + rotation", rotation=True),
  # The paper's Table 1 row: the query and its key share one rotation (augment.shared).
  "moco_rotation_same": dict(
    title="MoCo + rotation, same for q and k", rotation=True, shared=("rotation",)
  ),
  # The compute-matched control: as many key views per image as LooC (rotation), all of them
  # positives in MoCo's single space (augment.extra_keys).
  "moco_rotation_keys": dict(title="MoCo + rotation, 2 keys", rotation=True, extra_keys=1),
  "looc_rotation": dict(title="LooC (rotation)", spaces=("rotation",), rotation=True),
  "looc_color": dict(title="LooC (colour)", spaces=("color",)),
  "looc_color_rotation": dict(
    title="LooC (colour, rotation)", spaces=("color", "rotation"), rotation=True
  ),
  "looc_pp": dict(
    title="LooC++ (colour, rotation)",
    spaces=("color", "rotation"),
    rotation=True,
    looc_plus_plus=True,
  ),
  "looc_texture": dict(
    title="LooC (rotation, texture)", spaces=("rotation", "texture"), rotation=True, texture=True
  ),
  # The augmentation-aware family (docs/objectives.md), added after the pre-registration: the
  # ``objectives`` preset, exploratory. AugSelf and CASSLE on MoCo + rotation, each told the
  # rotation among its groups, with LooC (rotation)'s key views; E-SSL as its paper runs it,
  # rotation only in its predicted views (whose passes cost about what one more key costs).
  "moco_rotation_augself": dict(
    title="MoCo + rotation + AugSelf, 2 keys",
    rotation=True,
    extra_keys=1,  # compute-matched to LooC (rotation), as the 2-keys control
    overrides=(
      ("objectives.augself.weight", 0.5),
      ("objectives.augself.groups", ("crop", "color", "rotation")),
    ),
  ),
  "moco_essl": dict(
    title="MoCo + E-SSL",
    overrides=(
      ("objectives.essl.weight", 0.4),  # E-SimCLR's weight
      ("objectives.essl.image_size", 8),  # half the views' side, as E-SSL's CIFAR-10
      ("objectives.essl.crop_scale", (0.2, 1.0)),  # E-SSL's CIFAR-10 rotation view
    ),
  ),
  "moco_rotation_cassle": dict(
    title="MoCo + rotation + CASSLE, 2 keys",
    rotation=True,
    extra_keys=1,  # compute-matched to LooC (rotation), as the 2-keys control
    overrides=(
      ("objectives.cassle.enabled", True),
      ("objectives.cassle.groups", ("color", "crop", "grayscale", "rotation")),
    ),
  ),
}
DIGITS_ROWS = (
  "random_init",
  "supervised",
  "moco",
  "moco_rotation",
  "moco_rotation_same",
  "moco_rotation_keys",
  "looc_rotation",
  "looc_color",
  "looc_color_rotation",
  "looc_pp",
)
# The objectives preset: the digits condition's gate rows and references beside the three.
OBJECTIVE_ROWS = (
  "random_init",
  "supervised",
  "moco",
  "moco_rotation",
  "looc_rotation",
  "moco_rotation_augself",
  "moco_essl",
  "moco_rotation_cassle",
)
MECHANISM_ROWS = (
  "random_init",
  "moco",
  "moco_rotation",
  "moco_rotation_keys",
  "looc_rotation",
  "looc_color_rotation",
  "looc_pp",
  "looc_texture",
)
REFERENCE = "moco_rotation"


def _hypothesis(text, metric, a, b, margin=0.0, direction="greater"):
  """A one-sided hypothesis "mean(a - b) > margin" on ``metric`` (accuracies in [0, 1])."""
  return dict(text=text, metric=metric, a=a, direction=direction, b=b, margin=margin)


# docs/preregistration_digits.md, "Hypotheses and test": one family of five.
DIGITS_HYPOTHESES = {
  "H1": _hypothesis("the paper's premise", "rotation", "moco", "moco_rotation"),
  "H2": _hypothesis("LooC keeps rotation", "rotation", "looc_rotation", "moco_rotation"),
  "H2b": _hypothesis("not the extra key view", "rotation", "looc_rotation", "moco_rotation_keys"),
  "H3": _hypothesis(
    "non-inferiority, margin 2 points", "digit", "looc_rotation", "moco_rotation", margin=-0.02
  ),
  "H4": _hypothesis("the colour claim's form", "digit_hue", "looc_color", "moco"),
}
# docs/preregistration_digits.md, "Gates": means over seeds. ``gain``: row - reference >=
# threshold; ``at_most``: row <= threshold; ``own_view``: every augmentation-specific space of
# every LooC row that ran has own-view top-1 >= threshold at the end of training.
DIGITS_GATES = {
  "G1": dict(
    text="the class is learnable at this size",
    kind="gain",
    metric="digit",
    row="supervised",
    reference="random_init",
    threshold=0.20,
  ),
  "G2": dict(
    text="self-supervision learns the class",
    kind="gain",
    metric="digit",
    row="moco_rotation",
    reference="random_init",
    threshold=0.10,
  ),
  "G3": dict(text="the spaces work", kind="own_view", threshold=0.70),
  "G4": dict(
    text="rotation has headroom",
    kind="at_most",
    metric="rotation",
    row="random_init",
    threshold=0.80,
  ),
}
# The earlier conditions' rotation and hue hypotheses (docs/claims.md, "Mechanism check").
ROTATION_HYPOTHESES = {
  "R1": _hypothesis("rotation costs rotation", "rotation", "moco", "moco_rotation"),
  "R2": _hypothesis("LooC (rotation)", "rotation", "looc_rotation", "moco_rotation"),
  "R3": _hypothesis("LooC (colour, rotation)", "rotation", "looc_color_rotation", "moco_rotation"),
  "R4": _hypothesis("LooC++", "rotation", "looc_pp", "moco_rotation"),
  "R5": _hypothesis("LooC (rotation, texture)", "rotation", "looc_texture", "moco_rotation"),
  "R6": _hypothesis("not the extra key", "rotation", "looc_rotation", "moco_rotation_keys"),
}
HUE_HYPOTHESES = {
  "C1": _hypothesis("colour space keeps hue", "hue", "looc_color_rotation", "moco_rotation"),
  "C2": _hypothesis("LooC++ keeps hue", "hue", "looc_pp", "moco_rotation"),
}
# What the digits runs do differently from the pre-registration (reported with the results).
DIGITS_DEVIATIONS = (
  "Horizontal flip is off (a mirrored 2, 3, 4, 5, 6, 7 or 9 is not that digit): a deviation "
  "from MoCo v2's augmentations, fixed in the pre-registration.",
  "LooC++ is trained as its own row (model.looc_plus_plus with colour and rotation spaces: each "
  "space owns its res5 stage) and probed on the concatenation of the spaces' res5 features; "
  "the pre-registration's 'LooC (colour, rotation) read through the LooC++ concatenation' is "
  "read as this architecture, whose downstream feature is that concatenation.",
)


def base_config() -> ml_collections.ConfigDict:
  """The digits condition's config (docs/preregistration_digits.md, "Base configuration"),
  which the other conditions override where they differ: ResNet-10 with the small stem, 2-layer
  heads of hidden width 64, embedding 128, float32; MoCo v2's colour jitter; blur off
  (invisible at these sizes); horizontal flip off (a mirrored digit is another symbol); crop
  scale (0.5, 1); batch 128, SGD with momentum 0.9 at lr 0.2 x batch / 256, weight decay 5e-4
  (not on BatchNorm parameters and biases), 1 warm-up epoch, cosine; EMA 0.99, temperature
  0.2, in-batch negatives. Canvas and view size, steps and width: the pilot's (one seed, 100;
  docs/claims.md, "The pilot")."""
  c = config_lib.default_config()
  c.data.name = "digits"
  c.data.eval_split = "test"
  c.data.num_train = 4096
  c.data.image_size = 24  # S, the canvas (pilot)
  c.augment.image_size = 16  # the views (pilot)
  c.model.width = 8  # W (pilot)
  c.train.num_steps = 1000  # N (pilot): 31 epochs of the 4,096 renderings
  c.augment.flip.enabled = False
  c.augment.blur.enabled = False
  c.augment.crop.scale = (0.5, 1.0)
  c.model.architecture = "resnet10"
  c.model.stem = "small"
  c.model.head_hidden = 64
  c.model.dtype = "float32"
  c.loss.queue_size = 0  # in-batch negatives only
  c.train.batch_size = 128
  c.train.base_lr = 0.2
  c.train.weight_decay = 5e-4
  c.train.weight_decay_mask = "no_bn_bias"  # BatchNorm parameters and biases are not decayed
  c.train.warmup_epochs = 1.0
  c.train.ema_momentum = 0.99
  c.loss.temperature = 0.2
  c.log_every_steps = 50
  c.checkpoint_every_steps = 10_000  # the final step is always saved
  c.keep_every_steps = 0
  c.async_checkpoints = False
  return c


def eval_config() -> ml_collections.ConfigDict:
  """Linear probes ("fast"), the rotation probe and the sensitivity matrix; nothing else."""
  c = evaluate.default_config()
  c.knn.enabled = False
  c.fewshot.enabled = False
  c.corruption.enabled = False
  c.sensitivity.enabled = True
  c.sensitivity.augmentations = ("crop", "color", "rotation")
  c.results_file = "evaluation_claims.json"
  c.heatmap_file = "sensitivity_claims.png"
  return c


def _condition(description, hypotheses, overrides, *, labels, primary_label=None, **extra):
  """One condition: its data and sizes (``overrides`` of the base config), the evaluation's
  labels, and its pre-registered gates, hypotheses and deviations."""
  c = ml_collections.ConfigDict()
  c.description = description
  c.overrides = tuple(overrides.items())  # (("section.field", value), ...) on the base config
  c.labels = tuple(labels)  # linear-probe labels
  c.primary_label = primary_label or c.labels[0]  # the class: supervised row, gates
  c.hypotheses = ml_collections.ConfigDict(hypotheses)  # one family (Holm)
  c.gates = ml_collections.ConfigDict(extra.get("gates", {}))
  c.preregistration = extra.get("preregistration", "")  # the committed file, or ""
  c.deviations = tuple(extra.get("deviations", ()))
  c.sensitivity = tuple(extra.get("sensitivity", ("crop", "color", "rotation")))
  c.rows = tuple(extra.get("rows", ()))  # () = the experiment's rows (claims.rows)
  return c


# The earlier conditions' config where it differs from the base (their record: docs/claims.md).
SHAPES = {
  "data.name": "synthetic",
  "data.eval_split": "validation",
  "data.image_size": 32,
  "augment.image_size": 24,
  "augment.flip.enabled": True,
  "augment.texture.freq": (3.0, 8.0),  # below Nyquist (12 cycles) at 24 px
  "model.width": 8,
  "train.num_steps": 200,
}


def conditions() -> ml_collections.ConfigDict:
  """The datasets the rows are compared on, each with its pre-registered analysis."""
  c = ml_collections.ConfigDict()
  c.digits = _condition(
    "scikit-learn's handwritten digits, 12 ink hues, random size and position; split by image",
    DIGITS_HYPOTHESES,
    {},  # the base config
    labels=("digit", "digit_hue"),
    gates=DIGITS_GATES,
    preregistration="docs/preregistration_digits.md",
    deviations=DIGITS_DEVIATIONS,
  )
  c.lit = _condition(
    "embedded shapes, light from above (a global orientation cue)",
    ROTATION_HYPOTHESES,
    {**SHAPES, "data.synthetic_light": 0.5},
    labels=("shape", "color", "texture"),
    sensitivity=("crop", "flip", "color", "rotation", "texture"),
  )
  c.unlit = _condition(
    "embedded shapes, evenly lit: orientation shows only in the objects' shapes",
    ROTATION_HYPOTHESES,
    {**SHAPES, "data.synthetic_light": 0.0},
    labels=("shape", "color", "texture"),
    sensitivity=("crop", "flip", "color", "rotation", "texture"),
  )
  c.fine_color = _condition(
    "embedded shapes, lit, hues uniform over the circle; fine label: 24 hue bins",
    {**ROTATION_HYPOTHESES, **HUE_HYPOTHESES},
    {
      **SHAPES,
      "data.synthetic_light": 0.5,
      "data.synthetic_hue_jitter": 30.0,
      "data.synthetic_hue_bins": 24,
    },
    labels=("hue", "color", "shape", "texture"),
    sensitivity=("crop", "flip", "color", "rotation", "texture"),
  )
  c.photos = _condition(
    "patches of scikit-image's sample photographs (leave_one_out/data/photos.py)",
    ROTATION_HYPOTHESES,
    {**SHAPES, "data.name": "photos"},
    labels=("photo",),
    sensitivity=("crop", "flip", "color", "rotation", "texture"),
  )
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  """The experiment for one preset: base config, rows, seeds, conditions and the analysis."""
  preset = preset or "full"
  if preset not in PRESETS:
    raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.base = base_config()
  c.eval = eval_config()
  c.methods = ml_collections.ConfigDict(METHODS)
  c.rows = DIGITS_ROWS  # which rows run, in table order
  c.reference = REFERENCE  # the exploratory comparisons are against this row
  # Feature kinds each run evaluates (probes and sensitivity): the paper's downstream features;
  # "looc++" only on LooC++ rows.
  c.feature_kinds = ("backbone", "looc++")
  c.seeds = (0, 1, 2, 3, 4, 5)
  c.conditions = conditions()
  c.run_conditions = ("digits",)
  c.analysis = ml_collections.ConfigDict(ANALYSIS)
  if preset == "ci":  # docs/claims.md, "The CI preset": fixed before the full preset's
    # results were read, run after it. H2's rows only, so of the gates only G3 is measured.
    c.rows = ("moco_rotation", "looc_rotation")
    c.seeds = (0, 1, 2, 3, 4)
    c.conditions.digits.hypotheses = {"H2": DIGITS_HYPOTHESES["H2"]}
    c.base.data.image_size = 16  # 12-px views of 16-px canvases, 300 steps: about a fifth
    c.base.augment.image_size = 12  # of the full preset's CPU time per run
    c.base.train.num_steps = 300
    c.eval.dataset.num_train = 1000
    c.eval.dataset.num_test = 500
    c.eval.rotation.num_train = 500
    c.eval.sensitivity.enabled = False  # the full preset reports it
  elif preset == "gpu":
    c.seeds = tuple(range(20))
    c.run_conditions = ("digits", "digits_resnet18")
    c.conditions.digits_resnet18 = _condition(
      "the digits condition with a ResNet-18, a 4,096-key queue per space and shuffle-BN",
      DIGITS_HYPOTHESES,
      {
        "model.architecture": "resnet18",
        "model.width": 64,
        "loss.queue_size": 4096,
        "model.key_bn": "shuffle",
        "model.bn_groups": 8,
      },
      labels=("digit", "digit_hue"),
      gates=DIGITS_GATES,
      preregistration="docs/preregistration_digits.md",
      deviations=DIGITS_DEVIATIONS,
      # The rows of the gates and of the family of five; the exploratory rows run in the
      # ResNet-10 arm only.
      rows=(
        "random_init",
        "supervised",
        "moco",
        "moco_rotation",
        "moco_rotation_keys",
        "looc_rotation",
        "looc_color",
      ),
    )
  elif preset == "objectives":  # docs/claims.md, "The augmentation-aware family"
    c.rows = OBJECTIVE_ROWS
    c.conditions.digits.hypotheses = {}  # exploratory: no family, no verdicts
  elif preset == "mechanism":
    c.rows = MECHANISM_ROWS
    c.seeds = (0, 1, 2, 3, 4)
    c.run_conditions = ("lit", "unlit", "fine_color", "photos")
  return c
