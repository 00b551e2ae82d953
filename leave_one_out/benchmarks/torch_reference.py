"""A PyTorch LooC train step, for timing the project's step against PyTorch's on the same CPU.

Written from the method (docs/method.md), the way a PyTorch reproduction of the paper builds it:

- views on the host, one image at a time, with PIL: torchvision-style random-resized crop
  (integer box, 10 attempts, centre-crop fallback), horizontal flip, colour jitter (brightness,
  contrast, saturation with ``PIL.ImageEnhance``, hue by shifting the HSV hue channel; the four
  in a random order, applied with p = 0.8), grayscale (p = 0.2), Gaussian blur (p = 0.5, sigma
  in pixels of a 224-px image scaled to the view side, ``PIL.ImageFilter.GaussianBlur``) and a
  rotation by a multiple of 90 degrees (``Image.transpose``). Views q, k_0, k_1..k_n: k_i copies
  q's parameters of augmentation i (colour: the whole jitter/grayscale group; rotation: k) and
  draws the rest afresh; a re-drawn rotation differs from q's (k' = k + randint(1, 4) mod 4), as
  the project's ``augment.redraw = "different"``.
- ResNet-18/34 with torchvision's layout and the small stem (3x3 stride-1 convolution, no
  max-pool) for small images, one MoCo v2 head (Linear F-F, ReLU, Linear F-128, L2-normalised)
  per space on the shared pooled feature.
- The query through the encoder with gradients; the n + 1 key views through the EMA copy, in one
  call (BatchNorm in train mode over all keys, as ``train.train_step``).
- The loss of ``leave_one_out.losses.looc_loss`` with its defaults (every own key a positive in
  Z_0, mean over spaces, in-batch negatives only), SGD with momentum and weight decay on every
  parameter, then the EMA update of the key encoder's parameters.

torch is an optional dependency (``pip install torch==2.13.0``, the CPU wheel, or the project's
``[torch]`` extra); this module needs it at import. Nothing here is used by training.
"""

from __future__ import annotations

import copy
import math

import numpy as np

INSTALL = "pip install torch==2.13.0"

try:
  import torch
  import torch.nn.functional as F
  from torch import nn
except ImportError as error:  # pragma: no cover - depends on the environment
  raise ImportError(
    "leave_one_out.benchmarks.torch_reference needs PyTorch, an optional dependency of the "
    f"benchmarks: install the CPU wheel with `{INSTALL}` (or `pip install -e '.[torch]'`)."
  ) from error

from PIL import Image  # noqa: E402  (after the torch check)
from PIL import ImageEnhance  # noqa: E402  (after the torch check)
from PIL import ImageFilter  # noqa: E402  (after the torch check)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPACES = ("color", "rotation")
# Quarter turns counter-clockwise, as np.rot90 (and the project's rotation k).
_ROTATIONS = {
  1: Image.Transpose.ROTATE_90,
  2: Image.Transpose.ROTATE_180,
  3: Image.Transpose.ROTATE_270,
}


# ------------------------------------------------------------------------------------- views


def _crop_box(
  rng: np.random.Generator, width: int, height: int, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)
):
  """torchvision RandomResizedCrop's box (left, top, right, bottom) in whole pixels."""
  area = width * height
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return left, top, left + w, top + h
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    w, h = int(round(height * ratio[1])), height
  else:
    w, h = width, height
  top, left = (height - h) // 2, (width - w) // 2
  return left, top, left + w, top + h


def sample_params(rng: np.random.Generator, width: int, height: int) -> dict:
  """One view's parameters, every augmentation drawn fresh (MoCo v2's values plus rotation)."""
  return {
    "crop": _crop_box(rng, width, height),
    "flip": bool(rng.random() < 0.5),
    "color": {
      "apply": bool(rng.random() < 0.8),
      "factors": rng.uniform(0.6, 1.4, 3).tolist(),  # brightness, contrast, saturation
      "hue": float(rng.uniform(-0.1, 0.1)),
      "order": rng.permutation(4).tolist(),
      "gray": bool(rng.random() < 0.2),
    },
    "blur": {"apply": bool(rng.random() < 0.5), "sigma": float(rng.uniform(0.1, 2.0))},
    "rotation": int(rng.integers(0, 4)),
  }


def view_params(rng: np.random.Generator, width: int, height: int, spaces=SPACES) -> list[dict]:
  """Parameters of q, k_0, k_1..k_n for one image (n = len(spaces))."""
  q = sample_params(rng, width, height)
  views = [q]
  for shared in (None,) + tuple(spaces):
    p = sample_params(rng, width, height)
    for name in spaces:
      if name == shared:
        p[name] = copy.deepcopy(q[name])
      elif name == "rotation":  # a re-drawn rotation is never q's
        p[name] = (q[name] + int(rng.integers(1, 4))) % 4
    views.append(p)
  return views


def _hue(image: Image.Image, shift: float) -> Image.Image:
  hsv = np.array(image.convert("HSV"))
  hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(shift * 255))) % 256
  return Image.fromarray(hsv, "HSV").convert("RGB")


def render(image: Image.Image, p: dict, size: int) -> np.ndarray:
  """One view as uint8 `[size, size, 3]`: crop-resize, flip, colour, grayscale, blur, rotation."""
  x = image.resize((size, size), Image.Resampling.BILINEAR, box=p["crop"])
  if p["flip"]:
    x = x.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  c = p["color"]
  if c["apply"]:
    for op in c["order"]:
      if op == 0:
        x = ImageEnhance.Brightness(x).enhance(c["factors"][0])
      elif op == 1:
        x = ImageEnhance.Contrast(x).enhance(c["factors"][1])
      elif op == 2:
        x = ImageEnhance.Color(x).enhance(c["factors"][2])
      else:
        x = _hue(x, c["hue"])
  if c["gray"]:
    x = x.convert("L").convert("RGB")
  if p["blur"]["apply"]:
    x = x.filter(ImageFilter.GaussianBlur(p["blur"]["sigma"] * size / 224))
  if p["rotation"]:
    x = x.transpose(_ROTATIONS[p["rotation"]])
  return np.asarray(x)


def make_views(
  rng: np.random.Generator, images: np.ndarray, size: int, spaces=SPACES, channels_last: bool = True
) -> torch.Tensor:
  """uint8 `[B, H0, W0, 3]` -> normalised float32 `[n+2, B, 3, size, size]` (q, k_0..k_n).

  ``channels_last``: the tensor's memory is NHWC (``torch.channels_last``), the layout oneDNN's
  CPU convolutions prefer; the shape is NCHW either way.
  """
  out = np.empty((len(spaces) + 2, images.shape[0], size, size, 3), np.uint8)
  for b, array in enumerate(images):
    image = Image.fromarray(array)
    for v, p in enumerate(view_params(rng, image.width, image.height, spaces)):
      out[v, b] = render(image, p, size)
  x = torch.from_numpy(out).float().div_(255.0)
  x = (x - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
  x = x.permute(0, 1, 4, 2, 3)  # NHWC memory seen as NCHW: channels_last for free
  return x if channels_last else x.contiguous()


# ------------------------------------------------------------------------------------- model


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
  conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)
  nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
  return conv


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with BatchNorm, stride on the first, 1x1 shortcut when the shape
  changes (torchvision's ResNet-18/34 block)."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1, self.bn1 = _conv(cin, cout, 3, stride), nn.BatchNorm2d(cout)
    self.conv2, self.bn2 = _conv(cout, cout, 3), nn.BatchNorm2d(cout)
    self.shortcut = None
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(_conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class LooCNet(nn.Module):
  """Small-stem ResNet (basic blocks) plus one projection head per space.

  ``forward(x [N, 3, S, S]) -> [N, H, embedding_dim]``, L2-normalised.
  """

  def __init__(
    self, stage_sizes=(2, 2, 2, 2), width: int = 64, num_spaces: int = 3, embedding_dim: int = 128
  ):
    super().__init__()
    self.stem = nn.Sequential(_conv(3, width, 3), nn.BatchNorm2d(width), nn.ReLU())
    blocks, cin = [], width
    for i, n in enumerate(stage_sizes):
      cout = width * 2**i
      for j in range(n):
        blocks.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
        cin = cout
    self.blocks = nn.Sequential(*blocks)
    self.heads = nn.ModuleList(
      nn.Sequential(nn.Linear(cin, cin), nn.ReLU(), nn.Linear(cin, embedding_dim))
      for _ in range(num_spaces)
    )

  def forward(self, x):
    feature = self.blocks(self.stem(x)).mean(dim=(2, 3))
    z = torch.stack([head(feature) for head in self.heads], dim=1)
    return F.normalize(z.float(), dim=-1)


ARCHITECTURES = {"resnet10": (1, 1, 1, 1), "resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}


# -------------------------------------------------------------------------------------- loss


def looc_loss(q: torch.Tensor, k: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
  """``losses.looc_loss`` with its defaults: q `[B, H, D]`, k `[K, B, H, D]` (K = H) -> scalar.

  Candidates of a query in space h: the K keys of every image of the batch. Positives: all K
  own keys in space 0 (their log-probabilities averaged), k_h alone in space h >= 1. The H
  per-space losses are averaged, and the result over the batch.
  """
  num_keys, batch, num_spaces, _ = k.shape
  logits = torch.einsum("bhd,kBhd->bhkB", q, k) / temperature  # [B, H, K, B]
  lse = torch.logsumexp(logits.reshape(batch, num_spaces, num_keys * batch), dim=-1)  # [B, H]
  index = torch.arange(batch)
  own = logits[index, :, :, index]  # [B, H, K]: each query against its own image's keys
  positive = torch.eye(num_spaces, num_keys, dtype=torch.bool)
  positive[0] = True
  positive = positive.to(own.dtype)
  per_query = lse - (own * positive).sum(-1) / positive.sum(-1)
  return per_query.mean(0).mean()


# -------------------------------------------------------------------------------------- step


class LooCStep:
  """Query encoder, EMA key encoder and SGD; ``step(views)`` runs one LooC update.

  Args:
    architecture: a key of ``ARCHITECTURES``.
    width: channels of the first stage.
    num_spaces: H = n + 1.
    lr, momentum, weight_decay: SGD (weight decay on every parameter, MoCo v2).
    ema_momentum: the key encoder's EMA decay.
    temperature: tau of the loss.
    precision: "float32", or "bfloat16" (``torch.autocast`` on the CPU: oneDNN runs the
      convolutions and matmuls in bfloat16, on AMX units where the CPU has them).
    channels_last: keep the model's weights and activations NHWC in memory.
  """

  def __init__(
    self,
    architecture: str = "resnet18",
    width: int = 64,
    num_spaces: int = 3,
    lr: float = 0.0075,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    ema_momentum: float = 0.999,
    temperature: float = 0.2,
    precision: str = "float32",
    channels_last: bool = True,
    seed: int = 0,
  ):
    if architecture not in ARCHITECTURES:
      raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}")
    if precision not in ("float32", "bfloat16"):
      raise ValueError(f"precision must be float32 or bfloat16, got {precision!r}")
    torch.manual_seed(seed)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    self.query = (
      LooCNet(ARCHITECTURES[architecture], width, num_spaces).to(memory_format=memory).train()
    )
    self.key = copy.deepcopy(self.query)
    for p in self.key.parameters():
      p.requires_grad_(False)
    self.optimizer = torch.optim.SGD(
      self.query.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    self.ema_momentum = ema_momentum
    self.temperature = temperature
    self.precision = precision
    self.channels_last = channels_last

  def step(self, views: torch.Tensor) -> float:
    """views: float `[K+1, B, 3, S, S]` (q, k_0..k_n) -> the loss before the update."""
    num_keys, batch = views.shape[0] - 1, views.shape[1]
    keys = views[1:].reshape((num_keys * batch,) + views.shape[2:])
    query = views[0]
    if self.channels_last:
      keys = keys.contiguous(memory_format=torch.channels_last)
      query = query.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
      with torch.no_grad():
        k = self.key(keys).reshape(num_keys, batch, -1, self.key.heads[0][-1].out_features)
      q = self.query(query)
    loss = looc_loss(q.float(), k.float(), self.temperature)
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.optimizer.step()
    with torch.no_grad():
      m = self.ema_momentum
      ema, online = list(self.key.parameters()), list(self.query.parameters())
      torch._foreach_mul_(ema, m)
      torch._foreach_add_(ema, online, alpha=1.0 - m)
    return loss.item()
