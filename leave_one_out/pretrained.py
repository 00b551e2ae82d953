r"""Pretrained LooC models: load and export (features: ``leave_one_out.extract``).

Three lines from a training workdir to features, in a fresh process::

  import leave_one_out
  model, variables, config = leave_one_out.load_pretrained("/tmp/looc_demo")
  features = leave_one_out.extract_features(model, variables, images, kind="backbone",
                                            image_size=config.augment.image_size)  # [N, F]

``load_pretrained`` accepts a workdir (newest checkpoint), one checkpoint directory
(``workdir/checkpoints/<step>``) or a file written by ``export``. It restores only the encoder's
``params`` and ``batch_stats`` (the online, i.e. query, encoder by default, as MoCo evaluates),
not the optimizer state or the EMA copy, so it needs a third of the training state's memory.

Feature kinds and extraction: ``leave_one_out.extract``.

Export::

  python -m leave_one_out.pretrained --workdir=/tmp/looc_demo --out=/tmp/looc_demo.msgpack

writes the backbone, the LooC++ res5 stages and (unless ``--noinclude_heads``) the heads as one
msgpack file that needs only flax to read: ``flax.serialization.msgpack_restore(open(f, "rb")
.read())`` gives a dict with ``params``, ``batch_stats`` (numpy arrays), ``model`` (the
``models.LooCModel`` fields), ``image_size``, ``spaces``, ``input_mean``/``input_std`` (the
model normalises [0, 1] RGB inputs with these itself), ``step``, ``config`` (JSON) and
``definition``: the model runs with jax and flax alone through ``leave_one_out/standalone.py``, a
file that imports nothing from this package (``standalone.load(f)``). ``--out=FILE.pth`` writes
a PyTorch file instead (``--torch_layout``: torchvision, moco or looc; ``leave_one_out.torch_io``).

PyTorch checkpoints (MoCo v1/v2/v3, the LooC reproduction, AugSelf, solo-learn, torchvision)
come in with ``--import_torch=FILE --out=DIR``: DIR is then a workdir that ``load_pretrained``,
``load_backbone``, the evaluation and ``config.init_from`` read (``leave_one_out.torch_io``).

``load_backbone`` gives the backbone as a ``flax.linen`` module (input normalisation, ResNet,
pooling) with its variables, to build on in your own model (``leave_one_out.standalone``).
"""

from __future__ import annotations

import functools
import json
import os
import re

import flax
import jax
import jax.numpy as jnp
from etils import epath
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import config as config_lib
from leave_one_out import models
from leave_one_out import standalone
from leave_one_out import torch_io
from leave_one_out.run import checkpoints
from leave_one_out.sharding import make_mesh

EXPORT_FORMAT = "leave_one_out.export"
EXPORT_VERSION = 1
DEFINITION = "leave_one_out/standalone.py"  # the dependency-free model definition of exports
TORCH_SUFFIXES = (".pth", ".pt", ".tar")  # --out with these writes a PyTorch file
ENCODERS = ("online", "ema")
CheckpointError = checkpoints.CheckpointError  # unreadable, corrupt, or not matching its config
_CHECKPOINT_DIR = checkpoints.CHECKPOINT_DIR


# ------------------------------------------------------------------------------------ model


def abstract_variables(model: models.LooCModel, image_size: int) -> dict:
  """``{"params", "batch_stats"}`` as ``jax.ShapeDtypeStruct`` trees, without allocating.

  Traced once per model and size in a process (a model compares by its fields): loading the
  checkpoints of several seeds or steps of one config traces the model once.
  """
  return jax.tree.map(lambda x: x, _abstract_variables(model, image_size))  # fresh containers


@functools.lru_cache(maxsize=8)
def _abstract_variables(model: models.LooCModel, image_size: int) -> dict:
  dummy = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), dummy)


# ------------------------------------------------------------------------------------ loading


def _path(path) -> epath.Path:
  """A local path made absolute, or a remote one (gs://...) as it is."""
  return epath.Path(path if "://" in str(path) else os.path.abspath(path))


def _resolve(path: str, step: int | None) -> tuple[epath.Path, int | None]:
  """(workdir, step) for a workdir, its checkpoints/ folder or one checkpoints/<step> folder."""
  path = _path(path)
  if re.fullmatch(r"\d+", path.name) and path.parent.name == _CHECKPOINT_DIR:
    if step is not None and step != int(path.name):
      raise ValueError(f"step={step} contradicts the checkpoint directory {path}")
    return path.parent.parent, int(path.name)
  if path.name == _CHECKPOINT_DIR and not (path / _CHECKPOINT_DIR).is_dir():
    return path.parent, step
  return path, step


def load_pretrained(
  path: str, *, step: int | None = None, encoder: str = "online", mesh: Mesh | None = None
):
  """Loads a pretrained LooC encoder.

  Args:
    path: a training workdir (its newest checkpoint unless ``step``), a checkpoint directory
      ``<workdir>/checkpoints/<step>``, or a file written by ``export``; local or gs://.
    step: which checkpoint of a workdir; None = the newest.
    encoder: "online" (the query encoder, default) or "ema" (the momentum key encoder).
    mesh: where the variables go (replicated); None = every device.

  Returns:
    ``(model, variables, config)``: the ``models.LooCModel``; ``{"params", "batch_stats"}``
    replicated over the mesh, ready for ``model.apply(variables, images, train=False)``; the
    pretraining config (``ml_collections.ConfigDict``; image size ``config.augment.image_size``).

  Raises:
    FileNotFoundError: nothing loadable at ``path`` (or no checkpoint ``step``).
    CheckpointError (a ValueError): the checkpoint is unreadable or corrupt, or its arrays do
      not match the model its config describes; the message names the file and the arrays.
  """
  if encoder not in ENCODERS:
    raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
  mesh = make_mesh() if mesh is None else mesh
  if not _path(path).exists():
    raise FileNotFoundError(f"no pretrained model at {str(path)!r}: the path does not exist")
  if _path(path).is_file():
    if step is not None or encoder != "online":
      raise ValueError(
        f"{path} is an exported file (one encoder, one step): step and encoder "
        "apply to workdirs only"
      )
    return _load_export(path, mesh)
  workdir, step = _resolve(path, step)
  return _load_checkpoint(workdir, step, encoder, mesh)


def load_backbone(path: str, *, step: int | None = None, encoder: str = "online", dtype=None):
  """The pretrained backbone as a ``flax.linen`` module to build your own model on.

  Args:
    path, step, encoder: as for ``load_pretrained`` (a workdir, a checkpoint, an imported
      PyTorch checkpoint's directory or an exported file).
    dtype: the computation dtype; None = the pretraining run's (e.g. bfloat16).

  Returns:
    ``(backbone, variables)``: a ``leave_one_out.standalone.Backbone`` (ImageNet input
    normalisation, the ResNet and global pooling: ``[B, S, S, 3]`` floats in [0, 1] -> the
    downstream feature ``[B, F]``) and its ``{"params", "batch_stats"}`` (numpy, no heads). Use
    it as a submodule and fine-tune it like any flax module (docs/evaluation.md has an example).
  """
  model, variables, _ = load_pretrained(
    path, step=step, encoder=encoder, mesh=make_mesh(jax.devices()[:1])
  )
  fields = dict(_model_fields(model), dtype=model.dtype)
  return standalone.backbone_of(fields, jax.device_get(variables), dtype)


def imported(path: str, step: int | None = None) -> dict | None:
  """What ``--import_torch`` recorded when ``path`` was made from a PyTorch file (its format,
  how many heads came from it, whether it had a key encoder...), or None for a run of this
  package."""
  if _path(path).is_file():
    return _read_export(path).get("imported")
  workdir, step = _resolve(path, step)
  ckpt = checkpoints.Checkpointer(str(workdir), async_save=False)
  try:
    step = ckpt.latest_step() if step is None else step
    return None if step is None else ckpt.restore_meta(step).get("imported")
  finally:
    ckpt.close()


def _checkpoint_steps(directory: epath.Path) -> list[int]:
  """Committed steps under ``workdir/checkpoints`` (orbax's finished ``<step>`` folders)."""
  if not directory.is_dir():
    return []
  return sorted(
    int(p.name) for p in directory.iterdir() if re.fullmatch(r"\d+", p.name) and p.is_dir()
  )


def _load_checkpoint(workdir: epath.Path, step: int | None, encoder: str, mesh: Mesh):
  directory = workdir / _CHECKPOINT_DIR
  steps = _checkpoint_steps(directory)
  if not steps:
    raise FileNotFoundError(
      f"no LooC checkpoint at {str(workdir)!r}: expected a training workdir holding "
      f"{_CHECKPOINT_DIR}/<step>/, a checkpoint directory {_CHECKPOINT_DIR}/<step>, or a "
      "file written by leave_one_out.pretrained.export"
    )
  ckpt = checkpoints.Checkpointer(str(workdir), async_save=False)
  try:
    if step is None:
      step = ckpt.latest_step()
      if step is None:
        raise FileNotFoundError(f"no finished checkpoint under {directory} (found {steps})")
    elif step not in ckpt.all_steps():
      raise FileNotFoundError(
        f"no checkpoint for step {step} under {directory}; available steps: {ckpt.all_steps()}"
      )
    step_dir = directory / str(step)
    try:
      config = ckpt.restore_config(step)
      model = models.build_model(config)
    except Exception as e:
      raise CheckpointError(
        f"checkpoint {step_dir} is corrupt or not a LooC checkpoint: its meta (config) "
        f"cannot be read ({checkpoints.brief(e)})"
      ) from e
  finally:
    ckpt.close()
  abstract = abstract_variables(model, config.augment.image_size)
  return model, checkpoints.restore_encoder(step_dir, encoder, abstract, config, mesh), config


# ------------------------------------------------------------------------------------ export


def _export_subtree(tree: dict, include_heads: bool) -> dict:
  """The backbone, LooC++ res5 stages and (optionally) heads of a params/batch_stats tree."""
  return {
    k: v
    for k, v in tree.items()
    if k == "backbone" or k.startswith("res5_space") or (include_heads and k.startswith("head"))
  }


def export(
  path: str,
  out: str,
  *,
  step: int | None = None,
  encoder: str = "online",
  include_heads: bool = True,
  torch_layout: str = "torchvision",
) -> str:
  """Writes a pretrained encoder as one msgpack file that only flax is needed to read, or, when
  ``out`` ends in .pth, .pt or .tar, as a PyTorch file (``torch_io.export``).

  Args:
    path: anything ``load_pretrained`` accepts except an exported file.
    out: the file to write (parent folders are created).
    step, encoder: as for ``load_pretrained``.
    include_heads: keep the projection heads (needed for "embedding:i" features and for
      ``load_pretrained`` of the file); False writes only the backbone (and LooC++ stages).
    torch_layout: a PyTorch file's layout, one of ``torch_io.LAYOUTS``.

  Returns:
    ``out``. The file's layout is in the module docstring.
  """
  model, variables, config = load_pretrained(
    path, step=step, encoder=encoder, mesh=make_mesh(jax.devices()[:1])
  )
  host = jax.device_get(variables)
  if str(out).endswith(TORCH_SUFFIXES):
    if not include_heads:
      host = {c: {k: v for k, v in t.items() if not k.startswith("head")} for c, t in host.items()}
    return torch_io.export(
      model,
      host,
      out,
      layout=torch_layout,
      step=checkpoint_step(path, step),
      spaces=tuple(config.augment.spaces),
    )
  payload = {
    "format": EXPORT_FORMAT,
    "version": EXPORT_VERSION,
    "model": _model_fields(model),
    "image_size": int(config.augment.image_size),
    "spaces": list(config.augment.spaces),
    "input_mean": list(models.IMAGENET_MEAN),
    "input_std": list(models.IMAGENET_STD),
    "step": checkpoint_step(path, step),
    "encoder": encoder,
    "include_heads": include_heads,
    "config": config.to_json(),
    "definition": DEFINITION,
    "imported": imported(path, step),
    "params": _export_subtree(host["params"], include_heads),
    "batch_stats": _export_subtree(host["batch_stats"], include_heads),
  }
  data = flax.serialization.msgpack_serialize(payload)
  target = _path(out)
  target.parent.mkdir(parents=True, exist_ok=True)
  if "://" in str(out):
    target.write_bytes(data)  # object stores: writes are atomic already
  else:
    tmp = target.parent / (target.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
  return out


def checkpoint_step(path: str, step: int | None = None) -> int | None:
  """The training step ``load_pretrained(path, step=step)`` loads (None if there is none)."""
  if _path(path).is_file():
    stored = _read_export(path)["step"]
    return None if stored is None else int(stored)
  workdir, step = _resolve(path, step)
  if step is not None:
    return step
  steps = _checkpoint_steps(workdir / _CHECKPOINT_DIR)
  return steps[-1] if steps else None


def _model_fields(model: models.LooCModel) -> dict:
  return {
    "architecture": model.architecture,
    "num_spaces": int(model.num_spaces),
    "width": int(model.width),
    "embedding_dim": int(model.embedding_dim),
    "head_hidden": int(model.head_hidden),
    "looc_plus_plus": bool(model.looc_plus_plus),
    "small_stem": bool(model.small_stem),
    "dtype": "bfloat16" if model.dtype == jnp.bfloat16 else "float32",
    "bn_momentum": float(model.bn_momentum),
    **{name: getattr(model, name) for name in models.OBJECTIVE_FIELDS},  # auxiliary heads
  }


def _read_export(path: str) -> dict:
  try:
    payload = flax.serialization.msgpack_restore(_path(path).read_bytes())
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found != EXPORT_FORMAT:
      raise ValueError(f"its format is {found!r}, not {EXPORT_FORMAT!r}")
  except Exception as e:
    raise CheckpointError(
      f"{path} is not a file written by leave_one_out.pretrained.export ({checkpoints.brief(e)})"
    ) from e
  return payload


def _load_export(path: str, mesh: Mesh):
  payload = _read_export(path)
  if not payload["include_heads"]:
    raise CheckpointError(
      f"{path} was exported without heads (include_heads=False), so the LooC model cannot "
      "be rebuilt from it; read its backbone with flax.serialization.msgpack_restore, or "
      "export again with heads"
    )
  fields = dict(payload["model"])
  fields["dtype"] = jnp.bfloat16 if fields["dtype"] == "bfloat16" else jnp.float32
  model = models.LooCModel(**fields)
  config = checkpoints.read_config(json.loads(payload["config"]))
  variables = {"params": payload["params"], "batch_stats": payload["batch_stats"]}
  checkpoints.check_match(abstract_variables(model, payload["image_size"]), variables, path, config)
  variables = jax.device_put(variables, NamedSharding(mesh, P()))
  return model, variables, config


# ------------------------------------------------------------------------------------ CLI


def main(argv):
  from absl import flags
  from absl import logging

  if len(argv) > 1:
    raise ValueError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not f["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  if bool(f.workdir) == bool(f.import_torch):
    raise SystemExit("give --workdir=DIR (export) or --import_torch=FILE (import), not both")
  try:
    if f.import_torch:
      _import_main(f)
      return
    out = export(
      f.workdir,
      f.out,
      step=f.step if f.step >= 0 else None,
      encoder=f.encoder,
      include_heads=f.include_heads,
      torch_layout=f.torch_layout,
    )
  except (ImportError, ValueError, FileExistsError, FileNotFoundError) as e:
    raise SystemExit(f"leave_one_out.pretrained: {e}") from e
  print(f"wrote {out} ({_path(out).stat().length / 2**20:.1f} MiB)")
  if not str(out).endswith(TORCH_SUFFIXES):
    print(f"  runs with jax and flax alone: copy {DEFINITION}, then standalone.load({out!r})")


def _import_main(f) -> None:
  summary = torch_io.write_workdir(
    f.import_torch,
    f.out,
    arch=f.arch,
    spaces=None if f.spaces is None else tuple(s for s in f.spaces if s),
    image_size=f.image_size,
    cfg=config_lib.load_file(f.config) if f.config else None,
    trusted=f.trust_pickle,
  )
  heads = f"{summary['heads']} head(s)" if summary["heads"] else "no heads (drawn afresh)"
  print(f"format: {summary['format']}: {summary['description']}")
  print(
    f"imported: {summary['architecture']} (width {summary['width']}, {summary['stem']} stem), "
    f"{heads}, key encoder: {'yes' if summary['key_encoder'] else 'no (a copy)'}; "
    f"image_size {summary['image_size']}, spaces {summary['spaces']}"
  )
  left = summary["left_out"]
  if left:
    print(f"left out ({len(left)}): {', '.join(left[:10])}{' ...' if len(left) > 10 else ''}")
  print(f"wrote {f.out}: load_pretrained, evaluate --workdir and config.init_from read it")


if __name__ == "__main__":
  from absl import app
  from absl import flags

  flags.DEFINE_string("workdir", None, "Export: a training workdir or checkpoint directory.")
  flags.DEFINE_string("import_torch", None, "Import: a PyTorch checkpoint (format detected).")
  flags.DEFINE_string(
    "out", None, "Export: a .msgpack or a PyTorch .pth/.pt/.tar file; import: a new directory."
  )
  flags.DEFINE_integer("step", -1, "Checkpoint step; -1 = the newest.")
  flags.DEFINE_enum("encoder", "online", list(ENCODERS), "Which encoder to export.")
  flags.DEFINE_bool("include_heads", True, "Also export the projection heads.")
  flags.DEFINE_enum("torch_layout", "torchvision", list(torch_io.LAYOUTS), "A .pth file's layout.")
  flags.DEFINE_string("arch", None, "Import: the architecture the file must hold (checked).")
  flags.DEFINE_list("spaces", None, "Import: the augmentations of spaces 1..n (n + 1 heads).")
  flags.DEFINE_integer("image_size", 0, "Import: the model's input size; 0 = 224 (32: small stem).")
  flags.DEFINE_string("config", None, "Import: a config file whose other sections DIR keeps.")
  flags.DEFINE_bool("trust_pickle", False, "Import: allow pickled objects (trusted files only).")
  flags.mark_flags_as_required(["out"])
  app.run(main)
