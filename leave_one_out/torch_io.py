r"""PyTorch checkpoints in and out: torchvision ResNet state dicts and the SSL layouts around them.

Import (``python -m leave_one_out.pretrained --import_torch=FILE --out=DIR``): ``read`` loads a
file with ``torch.load`` (tensors only, unless trusted), ``parse`` recognises its layout
(``FORMATS``) and splits it into the query encoder's torchvision-keyed backbone, its MoCo v2
heads when it has them, the key (momentum) encoder when it has one, and what is not imported;
``to_flax`` converts to this package's variables (convolutions OIHW -> HWIO, linear layers
transposed, BatchNorm weight/bias/running_mean/running_var -> scale/bias/mean/var); and
``write_workdir`` writes DIR as a workdir holding one checkpoint (step 0) whose meta record's
config describes the model, so ``load_pretrained``, the evaluation and ``config.init_from`` read
it like any run. Architecture, stem (conv1 7x7: ImageNet; 3x3: small) and heads come from the
arrays; missing, unknown or misshapen arrays are one error listing them (no partial load).

Export (``--workdir=DIR --out=FILE.pth``): ``to_torch`` gives torchvision's keys (with each
BatchNorm's ``num_batches_tracked``) and ``export`` writes one of ``LAYOUTS``: "torchvision"
(``state_dict`` that torchvision's ResNet loads strictly once ``fc`` is dropped, ``heads``,
``objective_heads``, the input normalisation), "moco" (the file MoCo's ``main_lincls.py``
loads) or "looc" (the LooC reproduction's); docs/evaluation.md lists every key of each.
Only tensors, dicts, lists, strings and numbers are written, so ``torch.load(weights_only=True)``
reads every file. torch is optional: ``pip install torch==2.13.0`` (``INSTALL``).
"""

from __future__ import annotations

import dataclasses
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from leave_one_out import config as config_lib
from leave_one_out import models
from leave_one_out.resnet import ARCHITECTURES
from leave_one_out.run import checkpoints

INSTALL = "pip install torch==2.13.0"
TORCH_FORMAT = "leave_one_out.torch"
LAYOUTS = ("torchvision", "moco", "looc")
FORMATS = {
  "leave_one_out": "this package's torch export (state_dict + heads)",
  "torchvision": "a plain torchvision ResNet state dict (fc: a classifier, not imported)",
  "moco_v1": "MoCo v1 (module.encoder_q.*, linear head fc: not imported)",
  "moco_v2": "MoCo v2 (module.encoder_q.*, MLP head fc.0/fc.2)",
  "moco_v3": "MoCo v3 (module.base_encoder.*; BatchNorm projector and predictor: not imported)",
  "looc": "the LooC reproduction ([module.]backbone_q.*, heads_q.<i>.{0,2})",
  "augself": "AugSelf ({'backbone': ...}; BatchNorm projector and ss_predictor: not imported)",
  "solo-learn": "solo-learn (state_dict backbone.*; projector imported if Linear-ReLU-Linear)",
}
_LEAF = dict(kernel="weight", scale="weight", bias="bias", mean="running_mean", var="running_var")
_HEAD_KEYS = ("0.weight", "0.bias", "2.weight", "2.bias")


def _torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(f"reading and writing PyTorch files needs PyTorch: `{INSTALL}`") from e
  return torch


# ------------------------------------------------------------------------------------ names


def torch_key(path: tuple[str, ...]) -> tuple[str, str]:
  """(group, key) of a variable path: ("backbone", "layer1.0.conv2.weight") for
  ``("backbone", "res2", "block0", "Conv_1", "kernel")``; ("heads", "1.2.bias") for
  ``("head1", "fc2", "bias")``."""
  top, *mid, leaf = path
  if m := re.fullmatch(r"head(\d+)", top):
    return "heads", f"{m[1]}.{0 if mid == ['fc1'] else 2}.{_LEAF[leaf]}"
  if top != "backbone":
    raise ValueError(
      f"{'/'.join(path)} has no torchvision name: LooC++ (one res5 stage per space) has no "
      "counterpart in torchvision's ResNet"
    )
  return "backbone", ".".join([_torch_module(part) for part in mid] + [_LEAF[leaf]])


def _torch_module(part: str) -> str:
  """torchvision's name of one of this package's ResNet modules ("res2" -> "layer1", ...)."""
  fixed = {"stem_conv": "conv1", "stem_bn": "bn1"}
  fixed.update(downsample_conv="downsample.0", downsample_bn="downsample.1")
  if part in fixed:
    return fixed[part]
  kind, i = re.fullmatch(r"(res|block|Conv_|BatchNorm_)(\d+)", part).groups()
  i = int(i)
  return {"res": f"layer{i - 1}", "block": f"{i}", "Conv_": f"conv{i + 1}"}.get(kind, f"bn{i + 1}")


def _leaves(tree) -> dict[tuple[str, ...], object]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {tuple(str(getattr(k, "key", k)) for k in p): x for p, x in flat}


def _to_flax_array(value: np.ndarray, leaf: str) -> np.ndarray:
  if leaf == "kernel" and value.ndim == 4:
    return np.transpose(value, (2, 3, 1, 0))  # OIHW -> HWIO
  return value.T if leaf == "kernel" else value  # Linear [out, in] -> Dense [in, out]


def _to_torch_array(value: np.ndarray, leaf: str) -> np.ndarray:
  if leaf == "kernel" and value.ndim == 4:
    return np.transpose(value, (3, 2, 0, 1))  # HWIO -> OIHW
  return value.T if leaf == "kernel" else value


def to_flax(groups: dict[str, dict], abstract: dict, where: dict[str, str]) -> dict:
  """``{"params", "batch_stats"}`` shaped like ``abstract`` from torch arrays.

  Args:
    groups: {"backbone": torchvision-keyed arrays, "heads": "<h>.0.weight"-keyed arrays} (a
      group may be absent when ``abstract`` has none of its variables).
    abstract: the variables' shapes (``jax.ShapeDtypeStruct`` trees), or a subset of them.
    where: group -> the key prefix the arrays had in the file, for error messages.
  Raises ValueError listing every missing, unexpected and mis-shaped array (file key names).
  """
  out, used, problems = {}, {g: set() for g in groups}, []
  for collection, tree in abstract.items():
    flat = {}
    for path, spec in _leaves(tree).items():
      group, key = torch_key(path)
      name = where.get(group, "") + key
      if key not in groups.get(group, {}):
        problems.append(f"missing {name} {_torch_shape(spec.shape, path[-1])}")
        continue
      used[group].add(key)
      value = _to_flax_array(np.asarray(groups[group][key], np.float32), path[-1])
      if value.shape != tuple(spec.shape):
        problems.append(
          f"{name}: file {_torch_shape(value.shape, path[-1])}, model "
          f"{_torch_shape(spec.shape, path[-1])}"
        )
      flat[path] = value
    out[collection] = _unflatten(flat)
  for group, arrays in groups.items():
    extra = [k for k in arrays if k not in used[group] and not k.endswith("num_batches_tracked")]
    problems += [f"unexpected {where.get(group, '')}{k}" for k in sorted(extra)]
  if problems:
    raise ValueError(f"{len(problems)} arrays do not fit the model: " + "; ".join(problems[:12]))
  return out


def _torch_shape(shape, leaf: str) -> tuple:
  if leaf == "kernel" and len(shape) == 4:
    return tuple(shape[i] for i in (3, 2, 0, 1))
  return tuple(reversed(shape)) if leaf == "kernel" else tuple(shape)


def _unflatten(flat: dict) -> dict:
  tree = {}
  for path, value in flat.items():
    node = tree
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = value
  return tree


def to_torch(variables: dict, num_batches_tracked: int | None = None) -> dict[str, dict]:
  """{"backbone": torchvision keys -> numpy, "heads": "<h>.{0,2}.*" -> numpy} of variables
  (``batch_stats`` optional; with ``num_batches_tracked`` every BatchNorm gets that count)."""
  groups = {"backbone": {}, "heads": {}}
  for collection in ("params", "batch_stats"):
    for path, value in _leaves(variables.get(collection, {})).items():
      group, key = torch_key(path)
      groups[group][key] = _to_torch_array(np.asarray(value, np.float32), path[-1])
  if num_batches_tracked is not None:
    for key in [k for k in groups["backbone"] if k.endswith(".running_mean")]:
      count = np.asarray(num_batches_tracked, np.int64)
      groups["backbone"][key[: -len("running_mean")] + "num_batches_tracked"] = count
  return groups


def architecture(backbone: dict) -> dict:
  """{"architecture", "width", "small_stem"} of torchvision-keyed arrays: the block from
  ``layer1.0.conv3``, the blocks per stage from the keys, the stem from conv1's kernel."""
  conv1 = backbone.get("conv1.weight")
  if conv1 is None or np.ndim(conv1) != 4:
    raise ValueError("no torchvision ResNet backbone: conv1.weight [out, 3, k, k] is missing")
  block = "bottleneck" if "layer1.0.conv3.weight" in backbone else "basic"
  sizes = tuple(
    len({k.split(".")[1] for k in backbone if k.startswith(f"layer{i}.")}) for i in range(1, 5)
  )
  found = [name for name, spec in ARCHITECTURES.items() if spec == (block, sizes)]
  if not found:
    raise ValueError(
      f"no known ResNet has {block} blocks {sizes} per stage ({list(ARCHITECTURES)})"
    )
  kernel = np.shape(conv1)[-1]
  if kernel not in (3, 7):
    raise ValueError(f"conv1 is {kernel}x{kernel}: expected 7x7 (ImageNet) or 3x3 (small images)")
  return {"architecture": found[0], "width": int(np.shape(conv1)[0]), "small_stem": kernel == 3}


# ------------------------------------------------------------------------------------ import


@dataclasses.dataclass
class Source:
  """A parsed checkpoint: the encoder(s) to import and what is left out."""

  format: str
  backbone: dict  # torchvision keys (no fc) -> numpy
  heads: dict | None  # "<h>.{0,2}.{weight,bias}" -> numpy, or None (no MoCo v2 heads)
  key_backbone: dict | None = None  # the key (momentum) encoder, when the file has one
  key_heads: dict | None = None
  where: dict = dataclasses.field(default_factory=dict)  # group -> prefix in the file
  left_out: list = dataclasses.field(default_factory=list)  # keys in the file not imported


def read(path: str, *, trusted: bool = False):
  """The object a PyTorch file holds, tensors as numpy; ``trusted`` allows pickled objects."""
  torch = _torch()
  try:
    obj = torch.load(path, map_location="cpu", weights_only=not trusted)
  except FileNotFoundError:
    raise
  except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError...
    why = re.sub(r"\x1b\[[0-9;]*m", "", checkpoints.brief(e))  # torch's bold text
    message = f"{path} cannot be read as a PyTorch file ({why})."
    if not trusted:
      message += (
        " If it holds Python objects besides tensors and you trust it, pass --trust_pickle."
      )
    raise ValueError(message) from e
  return _numpy(obj, torch)


def _numpy(obj, torch):
  if isinstance(obj, torch.Tensor):
    return obj.detach().cpu().float().numpy() if obj.is_floating_point() else obj.numpy()
  if isinstance(obj, dict):
    return {k: _numpy(v, torch) for k, v in obj.items()}
  return obj


def _arrays(d) -> dict:
  return {k: v for k, v in d.items() if isinstance(v, np.ndarray)} if isinstance(d, dict) else {}


def _strip(d: dict, prefix: str) -> dict:
  return {k[len(prefix) :]: v for k, v in d.items() if k.startswith(prefix)}


def _heads(arrays: dict, prefix: str | None) -> dict | None:
  """MoCo v2 heads "<h>.{0,2}.*" under ``prefix``: one head (MoCo's ``fc.``, solo-learn's
  ``projector.``) when it is exactly Linear-ReLU-Linear, else every "<h>." (LooC); None if none."""
  if prefix is None:
    return None
  found = _strip(arrays, prefix)
  if prefix.endswith(("fc.", "projector.")):
    return {f"0.{k}": v for k, v in found.items()} if set(found) == set(_HEAD_KEYS) else None
  return found or None


# format: (query encoder, key encoder, query heads, key heads, other entries not imported), as
# prefixes of the state dict's keys after an optional "module.". An encoder's own fc (MoCo's
# projector, torchvision's classifier) is its heads or left out.
_LAYOUTS_IN = {
  "moco": ("encoder_q.", "encoder_k.", "encoder_q.fc.", "encoder_k.fc.", ("queue",)),
  "moco_v3": ("base_encoder.", "momentum_encoder.", None, None, ("predictor.",)),
  "looc": ("backbone_q.", "backbone_k.", "heads_q.", "heads_k.", ("queue_", "aug_classifier.")),
  "solo-learn": (
    "backbone.",
    "momentum_backbone.",
    "projector.",
    "momentum_projector.",
    ("classifier.", "momentum_classifier.", "predictor.", "queue"),
  ),
  "torchvision": ("", None, None, None, ()),
}


def parse(obj) -> Source:
  """Recognises a checkpoint's layout (``FORMATS``); ValueError naming its keys otherwise."""
  if not isinstance(obj, dict):
    raise ValueError(f"expected a dict of tensors (a state dict or a checkpoint), got {type(obj)}")
  if obj.get("format") == TORCH_FORMAT:
    return Source("leave_one_out", _arrays(obj["state_dict"]), _arrays(obj["heads"]) or None)
  if isinstance(obj.get("backbone"), dict):
    return _augself(obj)
  raw = _arrays(obj.get("state_dict", obj))
  if not raw:
    raise ValueError(f"no tensors found; the file's entries are {sorted(obj)[:12]}")
  sd = {k.removeprefix("module."): v for k, v in raw.items()}
  module = "module." if any(k.startswith("module.") for k in raw) else ""
  for fmt, layout in _LAYOUTS_IN.items():
    if layout[0] + "conv1.weight" in sd:
      return _split(fmt, sd, *layout, module=module)
  raise ValueError(
    "unknown checkpoint layout: expected one of "
    + "; ".join(FORMATS.values())
    + f". Its first keys: {sorted(sd)[:8]}"
  )


def _augself(obj: dict) -> Source:
  backbone = _arrays(obj["backbone"])
  backbone = {k.removeprefix("module."): v for k, v in backbone.items()}
  known = {"projector", "predictor", "prototypes", "ss_predictor", "optimizers", "schedulers"}
  unknown = sorted(set(obj) - known - {"backbone", "trainer"})
  if unknown:
    raise ValueError(f"{FORMATS['augself']}: unknown entries {unknown}")
  return Source("augself", backbone, None, left_out=sorted(set(obj) - {"backbone"}))


def _split(fmt, sd, query, key, query_heads, key_heads, others, *, module: str) -> Source:
  if fmt == "moco":
    fmt = "moco_v2" if query_heads + "0.weight" in sd else "moco_v1"
  encoder = lambda prefix: {k: v for k, v in _strip(sd, prefix).items() if not k.startswith("fc.")}
  backbone = encoder(query)
  key_backbone = encoder(key) if key else {}
  heads, k_heads = _heads(sd, query_heads), _heads(sd, key_heads)
  consumed = {query + k for k in backbone} | {key + k for k in key_backbone}
  for prefix, found in ((query_heads, heads), (key_heads, k_heads)):
    if found is not None:
      consumed |= {k for k in sd if k.startswith(prefix)}
  ignored = others + tuple(p for p in (query_heads, key_heads) if p)
  ignored += tuple(p + "fc." for p in (query, key) if p is not None)
  left_out = sorted(k for k in set(sd) - consumed if k.startswith(ignored))
  unknown = sorted(set(sd) - consumed - set(left_out))
  if unknown:
    raise ValueError(f"{FORMATS[fmt]}: unknown keys {unknown[:12]}")
  if fmt == "solo-learn" and architecture(backbone)["small_stem"]:
    raise ValueError(
      "solo-learn's CIFAR ResNet pads its 3x3 conv1 by 2 pixels; this package's small stem "
      "pads 1 (AugSelf's): the weights would compute another function"
    )
  where = {"backbone": module + query, "heads": module + (query_heads or "")}
  return Source(fmt, backbone, heads, key_backbone or None, k_heads, where, left_out)


def _head_shapes(heads: dict) -> tuple[int, int, int, int]:
  """(number of heads, input width, hidden width, output width) of "<h>.{0,2}.*" arrays."""
  count = len({k.split(".")[0] for k in heads})
  if "0.0.weight" not in heads or "0.2.weight" not in heads:
    raise ValueError(f"heads without 0.0.weight and 0.2.weight: {sorted(heads)[:8]}")
  hidden, width = np.shape(heads["0.0.weight"])
  return count, int(width), int(hidden), int(np.shape(heads["0.2.weight"])[0])


def import_config(source: Source, *, arch=None, spaces=None, image_size=0, cfg=None):
  """The config of the model a parsed checkpoint holds (``cfg``'s other sections kept; the
  input size ``image_size``, else ``cfg``'s, else 224, or 32 with a small stem)."""
  found = architecture(source.backbone)
  if arch and arch != found["architecture"]:
    raise ValueError(f"--arch={arch}, but the file holds a {found['architecture']}")
  size = image_size or (32 if found["small_stem"] else 224)
  if cfg is not None:  # a config of the caller's: its image size unless image_size is given
    size = image_size or cfg.augment.image_size
  cfg = config_lib.default_config() if cfg is None else config_lib.from_json(cfg.to_dict())
  m = cfg.model
  m.architecture, m.width = found["architecture"], found["width"]
  m.stem = "small" if found["small_stem"] else "imagenet"
  m.looc_plus_plus, m.dtype, m.zero_init_residual = False, "float32", False
  if source.heads:
    count, width, hidden, dim = _head_shapes(source.heads)
    m.head_hidden, m.embedding_dim = (0 if hidden == width else hidden), dim
    if spaces is None and count > 1:
      raise ValueError(
        f"the file has {count} heads: name the augmentations of spaces 1..{count - 1} in the "
        f"order of its heads, e.g. --spaces=color,rotation"
      )
    spaces = () if spaces is None else spaces
    if len(spaces) + 1 != count:
      raise ValueError(f"the file has {count} heads, --spaces names {len(spaces) + 1} spaces")
  cfg.augment.spaces = tuple(spaces or ())
  cfg.augment.image_size = size
  config_lib.validate(cfg)
  return cfg


def _variables(model, abstract, backbone, heads, where, seed: int) -> dict:
  """The model's variables: the backbone (and heads) from the file, else heads drawn afresh."""
  if heads:
    return to_flax({"backbone": backbone, "heads": heads}, abstract, where)
  trunk = {c: {"backbone": abstract[c]["backbone"]} for c in abstract}
  out = to_flax({"backbone": backbone}, trunk, where)
  width = models.LooCModel(model.architecture, width=model.width).feature_dim
  head = models.ProjectionHead(model.head_hidden or width, model.embedding_dim)
  for h in range(model.num_spaces):
    drawn = head.init(jax.random.PRNGKey(seed + h), jnp.zeros((1, width)))["params"]
    out["params"][f"head{h}"] = jax.device_get(drawn)
  return out


def write_workdir(path: str, out: str, **kwargs) -> dict:
  """Imports the PyTorch file ``path`` into ``out`` (a workdir with one checkpoint, step 0).

  Keyword arguments: ``arch`` (checked against the file), ``spaces`` (names of spaces 1..n when
  the file has n + 1 heads), ``image_size`` (0: 224, or 32 with a small stem), ``cfg`` (a
  config whose other sections DIR keeps, e.g. its data), ``trusted`` (allow pickled objects).
  Returns a summary: format, architecture, what was imported and what was left out.
  """
  trusted = kwargs.pop("trusted", False)
  if (epath.Path(out) / checkpoints.CHECKPOINT_DIR).exists():
    raise FileExistsError(f"{out} already holds checkpoints; import into a new directory")
  source = parse(read(path, trusted=trusted))
  cfg = import_config(source, **kwargs)
  model = models.build_model(cfg)
  dummy = jax.ShapeDtypeStruct((1, cfg.augment.image_size, cfg.augment.image_size, 3), jnp.float32)
  abstract = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), dummy)
  online = _variables(model, abstract, source.backbone, source.heads, source.where, cfg.seed)
  ema = online
  if source.key_backbone:
    key_heads = source.key_heads if source.heads and source.key_heads else source.heads
    ema = _variables(model, abstract, source.key_backbone, key_heads, {}, cfg.seed)
    if not source.heads:
      ema["params"].update({k: v for k, v in online["params"].items() if k.startswith("head")})
  summary = {
    "format": source.format,
    "description": FORMATS[source.format],
    "architecture": cfg.model.architecture,
    "width": cfg.model.width,
    "stem": cfg.model.stem,
    "heads": model.num_spaces if source.heads else 0,
    "key_encoder": bool(source.key_backbone),
    "left_out": source.left_out,
    "file": os.path.abspath(path) if "://" not in path else path,
  }
  state = {"params": online["params"], "batch_stats": online["batch_stats"]}
  state.update(ema_params=ema["params"], ema_batch_stats=ema["batch_stats"])
  meta = dict(
    checkpoints.meta_record(cfg, 0), imported={**summary, "left_out": len(source.left_out)}
  )
  ckpt = checkpoints.Checkpointer(out, async_save=False)
  try:
    ckpt.save(0, jax.tree.map(jnp.asarray, state), meta, force=True)
  finally:
    ckpt.close()
  return dict(summary, image_size=cfg.augment.image_size, spaces=tuple(cfg.augment.spaces))


# ------------------------------------------------------------------------------------ export


OBJECTIVE_HEADS = ("head_augself", "head_rotation", "head_condition")  # docs/objectives.md


def objective_arrays(variables: dict) -> dict:
  """{"head_augself.crop_fc1.weight": numpy, ...}: flax paths, torch's leaf names and layouts."""
  return {
    ".".join(path[:-1] + (_LEAF[path[-1]],)): _to_torch_array(np.asarray(v, np.float32), path[-1])
    for collection in ("params", "batch_stats")
    for path, v in _leaves(variables.get(collection, {})).items()
  }


def export(model, variables, out: str, *, layout: str = "torchvision", step: int = 0, spaces=()):
  """Writes ``variables`` of ``model`` (a LooC, not LooC++, model) as a PyTorch file in
  ``layout`` (``LAYOUTS``, module docstring). Returns ``out``."""
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
  if model.looc_plus_plus:
    raise ValueError("LooC++ has one res5 stage per space; torchvision's ResNet has one")
  host = jax.device_get(variables)
  objective = {c: {k: v for k, v in t.items() if k in OBJECTIVE_HEADS} for c, t in host.items()}
  host = {c: {k: v for k, v in t.items() if k not in OBJECTIVE_HEADS} for c, t in host.items()}
  if layout != "torchvision" and any("head_condition" in t for t in objective.values()):
    raise ValueError(
      f"a CASSLE model's heads also read the augmentation descriptor's embedding: the {layout!r} "
      "layout cannot hold them (use torchvision's, --noinclude_heads or a .msgpack file)"
    )
  torch = _torch()
  groups = to_torch(host, num_batches_tracked=int(step or 0))
  tensors = lambda d: {k: torch.from_numpy(np.array(v)) for k, v in d.items()}  # writable
  backbone, heads = tensors(groups["backbone"]), tensors(groups["heads"])
  if layout == "torchvision":
    obj = {
      "format": TORCH_FORMAT,
      "version": 1,
      "arch": model.architecture,
      "width": int(model.width),
      "small_stem": bool(model.small_stem),
      "step": int(step or 0),
      "spaces": ["invariant", *spaces],
      "state_dict": backbone,
      "heads": heads,
      "objective_heads": tensors(objective_arrays(objective)),
      "input_mean": torch.tensor(models.IMAGENET_MEAN),
      "input_std": torch.tensor(models.IMAGENET_STD),
    }
  elif layout == "moco":
    sd = {f"module.encoder_q.{k}": v for k, v in backbone.items()}
    sd.update({f"module.encoder_q.fc.{k[2:]}": v for k, v in heads.items() if k.startswith("0.")})
    obj = {"epoch": 0, "step": int(step or 0), "arch": model.architecture, "state_dict": sd}
  else:
    sd = {f"backbone_q.{k}": v for k, v in backbone.items()}
    sd.update({f"heads_q.{k}": v for k, v in heads.items()})
    obj = {"epoch": 0, "step": int(step or 0), "arch": model.architecture, "state_dict": sd}
  target = epath.Path(out if "://" in out else os.path.abspath(out))
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = target.parent / (target.name + ".tmp")
  with tmp.open("wb") as f:
    torch.save(obj, f)
  tmp.replace(target)
  return out
