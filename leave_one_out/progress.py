"""What a training run reports: each logging interval's averaged scalars, the one-line progress,
the check of non-finite steps and the flat config written as hparams (``train.train_and_evaluate``).
"""

import math

import jax
import ml_collections
import numpy as np


def flatten_metrics(metrics: dict, names: list[str]) -> dict[str, float]:
  """Device metrics -> {"loss": .., "loss/color": .., "top1/color": ..} as Python floats."""
  out = {}
  for key, value in jax.device_get(metrics).items():
    value = np.asarray(value)
    if key.endswith("_per_space"):
      prefix = key[:-len("_per_space")]
      out.update({f"{prefix}/{n}": float(v) for n, v in zip(names, value)})
    else:
      out[key] = float(value)
  return out


def average(history: list[dict], names: list[str]) -> dict[str, float]:
  """Mean of each metric over a logging interval, on the host: one transfer of the interval's
  metrics and no device op (an eager ``stack`` per metric cost about 8 ms each on CPUs)."""
  stacked = jax.tree.map(lambda *xs: np.stack(xs), *jax.device_get(history))
  scalars = flatten_metrics(jax.tree.map(lambda x: np.mean(np.asarray(x, np.float64), axis=0),
                                         stacked), names)
  scalars["nonfinite"] = float(len(history) - np.sum(stacked["finite"]))
  scalars.pop("finite", None)
  return scalars


def check_finite(cfg, scalars: dict, step: int) -> None:
  """Raises (naming the spaces) if the interval had a non-finite step and
  ``train.on_nonfinite`` is "stop"."""
  if scalars["nonfinite"] and cfg.train.on_nonfinite == "stop":
    bad = [k for k, v in scalars.items() if k.startswith("loss") and not math.isfinite(v)]
    raise FloatingPointError(
        f"non-finite loss or gradients in {int(scalars['nonfinite'])} step(s) up to step {step} "
        f"(spaces: {', '.join(bad) or 'gradients only'}); those updates were not applied and the "
        "last checkpoint is intact. Set config.train.on_nonfinite='skip' to skip such steps.")


def format_line(step, num_steps, steps_per_epoch, scalars, names, img_per_s, eta_s) -> str:
  """The one-line progress every process prints: step, epoch, loss, each space's loss / top-1
  (/ own-view top-1), throughput and ETA."""
  parts = [f"step {step}/{num_steps}", f"epoch {step / steps_per_epoch:.2f}",
           f"loss {scalars['loss']:.4f}"]
  for i, n in enumerate(names):  # loss / top-1 [/ own-view top-1 for augmentation spaces]
    own = f"/{100 * scalars[f'own_top1/{n}']:.0f}%" if i else ""
    parts.append(f"{n} {scalars[f'loss/{n}']:.3f}/{100 * scalars[f'top1/{n}']:.0f}%{own}")
  if img_per_s:
    parts += [f"{img_per_s:.0f} img/s", f"ETA {eta_s / 60:.1f} min"]
  return " | ".join(parts)


def flat_config(cfg, prefix="") -> dict:
  """The config as {"section.field": value} for TensorBoard's hparams."""
  out = {}
  for key, value in cfg.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(flat_config(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
  return out
