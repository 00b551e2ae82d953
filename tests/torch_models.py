"""torchvision's ResNet and MoCo v2's heads in plain torch.nn, for tests that compare with PyTorch.

torchvision does not import beside torch 2.13 here, so its ResNet is written out from
torchvision/models/resnet.py's structure: the same modules under the same names (so the same
state-dict keys: conv1, bn1, layer1..4 of BasicBlock/Bottleneck with downsample.0/1, fc), the
same forward (v1.5: the stride on the 3x3 convolution; the 7x7 stem pads 3, the max-pool 1) and
the same defaults (BatchNorm eps 1e-5, momentum 0.1). ``width`` generalises its 64 channels of
the first stage; ``small_stem`` is AugSelf's CIFAR stem (3x3 stride 1 pad 1, no max-pool).
Import it after ``pytest.importorskip("torch")``.
"""

import numpy as np
import torch
from torch import nn

INSTALL_REASON = "needs PyTorch (optional): pip install torch==2.13.0"


def conv3x3(cin, cout, stride=1):
  return nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)


def conv1x1(cin, cout, stride=1):
  return nn.Conv2d(cin, cout, 1, stride, bias=False)


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1, self.bn1 = conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu(out + identity)


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1, self.bn1 = conv1x1(inplanes, planes), nn.BatchNorm2d(planes)
    self.conv2, self.bn2 = conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
    self.conv3, self.bn3 = conv1x1(planes, planes * 4), nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu(out + identity)


class ResNet(nn.Module):
  def __init__(self, block, layers, width=64, small_stem=False, num_classes=1000):
    super().__init__()
    self.inplanes = width
    if small_stem:
      self.conv1 = nn.Conv2d(3, width, 3, 1, padding=1, bias=False)
    else:
      self.conv1 = nn.Conv2d(3, width, 7, 2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.Identity() if small_stem else nn.MaxPool2d(3, 2, padding=1)
    self.layer1 = self._make_layer(block, width, layers[0])
    self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
    self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
    self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

  def _make_layer(self, block, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(
        conv1x1(self.inplanes, planes * block.expansion, stride),
        nn.BatchNorm2d(planes * block.expansion),
      )
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * block.expansion
    layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(self.avgpool(x), 1))


ARCHITECTURES = {
  "resnet10": (BasicBlock, (1, 1, 1, 1)),
  "resnet18": (BasicBlock, (2, 2, 2, 2)),
  "resnet34": (BasicBlock, (3, 4, 6, 3)),
  "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


def resnet(name, *, width=64, small_stem=False, seed=0):
  """A ResNet with random weights and random BatchNorm affine parameters and running statistics
  (so that evaluation mode is no identity), in eval mode."""
  torch.manual_seed(seed)
  block, layers = ARCHITECTURES[name]
  model = ResNet(block, layers, width, small_stem)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
        m.running_mean.uniform_(-0.2, 0.2)
        m.running_var.uniform_(0.5, 2.0)
        m.num_batches_tracked.fill_(7)
  return model.eval()


def heads(num, width, hidden, dim, seed=1):
  """MoCo v2's heads, one per space: Linear(width, hidden) - ReLU - Linear(hidden, dim)."""
  torch.manual_seed(seed)
  return nn.ModuleList(
    nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, dim)) for _ in range(num)
  )


def normalise(images):
  """float [0, 1] `[N, H, W, 3]` numpy -> ImageNet-normalised NCHW tensor."""
  x = torch.from_numpy(np.array(images, np.float32)).permute(0, 3, 1, 2)
  mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
  std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
  return (x - mean) / std


def features(model, images):
  """The pooled feature (fc dropped) of float [0, 1] images `[N, H, W, 3]`, eval mode."""
  fc, model.fc = model.fc, nn.Identity()
  try:
    with torch.no_grad():
      return model.eval()(normalise(images)).numpy()
  finally:
    model.fc = fc
