"""One MoCo step and one LooC step (n = 2) equal a PyTorch reference written from docs/method.md.

The reference is independent of this package's training code: torchvision's ResNet in plain
torch.nn (tests/torch_models.py) in train mode, MoCo v2 heads, the loss of docs/method.md
("The loss": every key of the batch and the space's queue in the denominator; all n + 1 own
keys positive in Z_0, k_i alone in Z_i), torch.optim.SGD with momentum and weight decay on every
parameter, the key encoder's EMA (after the update, i.e. MoCo's momentum update before the next
step's keys) and MoCo's ring-buffer queue of k_0's embeddings. Shuffle-BN is MoCo v2's: the
query batch normalised in G contiguous chunks (one per GPU), the keys of the images of each
chunk of a fixed permutation normalised together. The same weights (converted with
``torch_io``) and the same views (rendered here by ``augment.make_views``) go to both; our step
is ``train.step_on_views`` with the permutation's groups. Two steps, so the SGD momentum
buffer, the second EMA update and the queue pointer count too.

Our gradient is read from an update with lr = 1024, no weight decay and no momentum
(p - p' = 1024 g, exact to a float32 rounding of the update); the reference's is ``p.grad``.

BatchNorm running averages are compared (means) with global BatchNorm only. Running variances
differ by design: PyTorch averages the unbiased batch variance, this package (as flax) the
biased one, n / (n - 1) apart (0.5% at this test's 2 x 2 res5 maps of 8 images). With shuffle-BN
this package averages the G groups' statistics; MoCo under DDP keeps rank 0's (DDP broadcasts
its buffers), and this single-process reference updates once per chunk.
"""

import functools

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch (optional): pip install torch==2.13.0")

from leave_one_out import augment  # noqa: E402
from leave_one_out import sharding  # noqa: E402
from leave_one_out import torch_io  # noqa: E402
from leave_one_out import train  # noqa: E402
from leave_one_out.data.synthetic import scenes  # noqa: E402
from tests import torch_models  # noqa: E402
from tests.helpers import tiny_config  # noqa: E402

pytestmark = pytest.mark.xdist_group("test_torch_step")

B, QUEUE, GROUPS, LR, WD, MOMENTUM, EMA, TAU = 8, 16, 2, 0.5, 5e-3, 0.9, 0.9, 0.2
PROBE_LR = 1024.0
# Tolerances reached (max |ours - torch| / max |torch| per tensor), docs/evaluation.md.
# BatchNorm running means compared with global BatchNorm only (module docstring).
TOLERANCE = {
  "loss": 1e-5,
  "grad": 1e-4,
  "params": 1e-5,
  "ema": 1e-5,
  "queue": 1e-5,
  "running_mean": 1e-5,
}


# ------------------------------------------------------------------------- the reference


class Encoder(torch.nn.Module):
  """torchvision ResNet (fc dropped) plus one MoCo v2 head per space, L2-normalised outputs."""

  def __init__(self, spaces: int, seed: int):
    super().__init__()
    self.resnet = torch_models.resnet("resnet10", width=8, small_stem=True, seed=seed).train()
    self.resnet.fc = torch.nn.Identity()
    self.heads = torch_models.heads(spaces, 64, 16, 8, seed=seed + 100)

  def forward(self, x):  # [N, 3, S, S] -> [N, H, D]
    feature = self.resnet(x)
    return torch.nn.functional.normalize(torch.stack([h(feature) for h in self.heads], 1), dim=-1)


def method_loss(q, k, queue):
  """docs/method.md's L: q [B, H, D], k [K, B, H, D], queue [H, D, Q] -> scalar."""
  num_keys, batch, spaces, dim = k.shape
  index = torch.arange(batch)
  per_space = []
  for h in range(spaces):
    candidates = k[:, :, h].reshape(num_keys * batch, dim)  # key l of image b at l * B + b
    logits = torch.cat([q[:, h] @ candidates.T, q[:, h] @ queue[h]], dim=1) / TAU
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    own = torch.stack([log_p[index, l * batch + index] for l in range(num_keys)], 1)  # [B, K]
    per_space.append(-(own.mean(1) if h == 0 else own[:, h]).mean())
  return torch.stack(per_space).mean()


class Reference:
  """MoCo/LooC in PyTorch: query encoder + SGD, EMA key encoder, one ring-buffer queue per space."""

  def __init__(self, spaces: int, shuffle: bool):
    self.query, self.key = Encoder(spaces, seed=0), Encoder(spaces, seed=1)
    for p in self.key.parameters():
      p.requires_grad_(False)
    self.opt = torch.optim.SGD(self.query.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    g = torch.Generator().manual_seed(2)
    self.queue = torch.nn.functional.normalize(torch.randn(spaces, 8, QUEUE, generator=g), dim=1)
    self.ptr, self.shuffle = 0, shuffle

  def step(self, views, idx_shuffle):
    """views [K+1, B, 3, S, S] normalised -> (loss, {name: grad})."""
    num_keys = views.shape[0] - 1
    if self.shuffle:  # each "GPU" normalises its contiguous chunk of queries
      q = torch.cat([self.query(c) for c in views[0].chunk(GROUPS)])
    else:
      q = self.query(views[0])
    with torch.no_grad():
      if self.shuffle:  # the keys of each chunk of shuffled images normalised together
        k = torch.empty(num_keys, B, q.shape[1], q.shape[2])
        for chunk in idx_shuffle.chunk(GROUPS):
          out = self.key(views[1:, chunk].reshape((-1,) + views.shape[2:]))
          k[:, chunk] = out.reshape(num_keys, len(chunk), *q.shape[1:])
      else:
        k = self.key(views[1:].reshape((-1,) + views.shape[2:])).reshape(num_keys, B, *q.shape[1:])
    loss = method_loss(q, k, self.queue)
    self.opt.zero_grad()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in self.query.named_parameters()}
    self.opt.step()
    with torch.no_grad():
      for pk, pq in zip(self.key.parameters(), self.query.parameters()):
        pk.mul_(EMA).add_(pq, alpha=1 - EMA)
      self.queue[:, :, self.ptr : self.ptr + B] = k[0].permute(1, 2, 0)
      self.ptr = (self.ptr + B) % QUEUE
    return loss.item(), grads


def newest_first(ring, ptr):
  """A MoCo ring buffer [H, D, Q] (next write at ``ptr``) as this package's queue [H, Q, D]:
  the batches newest first, each in batch order."""
  blocks = [(ptr - B * (i + 1)) % QUEUE for i in range(QUEUE // B)]
  return np.concatenate([ring[:, :, s : s + B] for s in blocks], axis=2).transpose(0, 2, 1)


def params(encoder):
  return dict(encoder.named_parameters())


def torch_groups(encoder: Encoder, named: dict) -> dict:
  """{"backbone": torchvision keys, "heads": "<h>.{0,2}.*"} numpy of an Encoder's named tensors."""
  out = {"backbone": {}, "heads": {}}
  for name, value in named.items():
    group, _, key = name.partition(".")
    out["backbone" if group == "resnet" else "heads"][key] = value.detach().numpy().copy()
  return out


# ------------------------------------------------------------------------- this package


def _config(spaces, bn_mode):
  cfg = tiny_config(spaces=spaces, batch=B)
  cfg.model.width, cfg.model.stem = 8, "small"
  cfg.model.head_hidden, cfg.model.embedding_dim = 16, 8
  cfg.model.key_bn, cfg.model.bn_groups = bn_mode, GROUPS
  cfg.loss.queue_size, cfg.loss.temperature = QUEUE, TAU
  cfg.train.schedule, cfg.train.base_lr = "constant", LR * 256 / B
  cfg.train.momentum, cfg.train.weight_decay, cfg.train.weight_decay_mask = MOMENTUM, WD, "all"
  cfg.train.ema_momentum = EMA
  return cfg


def _errors(ours: dict, theirs: dict) -> float:
  """max over tensors of max |ours - theirs| / max |theirs| (same keys)."""
  assert sorted(ours) == sorted(theirs)
  return max(
    float(np.abs(ours[k] - theirs[k]).max() / max(np.abs(theirs[k]).max(), 1e-12)) for k in ours
  )


@functools.lru_cache(maxsize=1)
def _views():
  """Two steps' views q, k_0, k_color, k_rotation `[2, 4, B, S, S, 3]`, rendered here; MoCo's
  steps take q and k_0 (every augmentation fresh in both)."""
  cfg = _config(("color", "rotation"), "global")
  images = scenes.load("test", num_examples=B, image_size=20)["image"]
  render = jax.jit(lambda rng: augment.make_views(rng, images, cfg.augment, np.ones(B))[0])
  return np.stack([np.asarray(render(jax.random.PRNGKey(10 + s))) for s in range(2)])


def _compare(spaces, bn_mode):
  cfg = _config(spaces, bn_mode)
  mesh = sharding.make_mesh(jax.devices()[:2])
  compiled = train.programs(cfg, mesh, steps_per_epoch=10)
  model = compiled.model
  ref = Reference(len(spaces) + 1, shuffle=bn_mode == "shuffle")
  shapes = compiled.abstract_state()
  abstract = {"params": shapes.params, "batch_stats": shapes.batch_stats}
  to_ours = lambda enc: torch_io.to_flax(torch_groups(enc, enc.state_dict()), abstract, {})
  q_vars, k_vars = to_ours(ref.query), to_ours(ref.key)
  state = train.TrainState(  # built here, not by the jitted init: one compilation less
    step=np.int32(0),
    params=q_vars["params"],
    batch_stats=q_vars["batch_stats"],
    ema_params=k_vars["params"],
    ema_batch_stats=k_vars["batch_stats"],
    opt_state=compiled.tx.init(q_vars["params"]),
    queue=newest_first(ref.queue.numpy(), 0),
    rng=np.zeros(2, np.uint32),
    nonfinite_steps=np.int32(0),
  )

  @jax.jit
  def step(state, views, hp, image_groups):
    bn = train.batch_norm_groups(cfg, mesh, None, B, views.shape[0] - 1, image_groups=image_groups)
    return train.step_on_views(state, views, hp, bn, cfg=cfg, model=model, mesh=mesh)

  probe_hp = dict(compiled.hyperparams, lr=np.float32(PROBE_LR), weight_decay=np.float32(0))
  probe_hp["momentum"] = np.float32(0)  # the update is the gradient alone
  errors = {k: 0.0 for k in TOLERANCE}
  for s in range(2):
    views = _views()[s, : len(spaces) + 2]
    idx_shuffle = torch.randperm(B, generator=torch.Generator().manual_seed(s))
    image_groups = np.empty(B, np.int32)
    image_groups[idx_shuffle.numpy()] = np.arange(B) // (B // GROUPS)
    torch_views = torch_models.normalise(views.reshape((-1,) + views.shape[2:]))
    loss, grads = ref.step(
      torch_views.reshape(views.shape[:2] + torch_views.shape[1:]), idx_shuffle
    )

    probe, _ = step(state, views, probe_hp, image_groups)
    probe = jax.device_get(probe)
    ours_grad = jax.tree.map(lambda a, b: (a - b) / PROBE_LR, state.params, probe.params)
    state, metrics = step(state, views, compiled.hyperparams, image_groups)
    state = jax.device_get(state)
    ours_stats = torch_io.to_torch({"batch_stats": state.batch_stats})["backbone"]
    theirs_stats = {k: v.numpy() for k, v in ref.query.resnet.state_dict().items()}
    stats = lambda d: {k: v for k, v in d.items() if k.endswith("running_mean")}
    got = {
      "loss": ({"loss": np.float32(metrics["loss"])}, {"loss": np.float32(loss)}),
      "grad": (torch_io.to_torch({"params": ours_grad}), torch_groups(ref.query, grads)),
      "params": (
        torch_io.to_torch({"params": state.params}),
        torch_groups(ref.query, params(ref.query)),
      ),
      "ema": (
        torch_io.to_torch({"params": state.ema_params}),
        torch_groups(ref.key, params(ref.key)),
      ),
      "queue": ({"q": state.queue}, {"q": newest_first(ref.queue.numpy(), ref.ptr)}),
      "running_mean": ({"backbone": stats(ours_stats)}, {"backbone": stats(theirs_stats)}),
    }
    for name, (ours, theirs) in got.items():
      if name in ("loss", "queue"):
        ours, theirs = {"all": ours}, {"all": theirs}
      for group in theirs:
        errors[name] = max(errors[name], _errors(ours[group], theirs[group]))
  return errors


@pytest.mark.slow
@pytest.mark.parametrize("bn_mode", ["global", "shuffle"])
@pytest.mark.parametrize("spaces", [(), ("color", "rotation")], ids=["moco", "looc"])
def test_two_steps_equal_the_pytorch_reference(spaces, bn_mode):
  errors = _compare(spaces, bn_mode)
  if bn_mode == "shuffle":  # running averages of G groups: this package's mean of the groups',
    del errors["running_mean"]  # MoCo's rank 0's (DDP broadcasts its buffers): not compared
  print(
    f"{'looc' if spaces else 'moco'} {bn_mode}: "
    + ", ".join(f"{k} {v:.1e}" for k, v in errors.items())
  )
  for name, error in errors.items():
    assert error < TOLERANCE[name], (name, errors)
