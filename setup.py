"""Installs leave_one_out.

The ranges below are those the tests pass on: the lower bound is the version in
requirements-lock.txt (the exact environment the project is developed and tested with, Python
3.11; ``pip install -c requirements-lock.txt -e '.[test]'`` reproduces it), the upper bound
stops before the first minor release that has not been tested. Tested on 2026-12-01, besides
the lock: Python 3.12.1 with the newest releases then (jax/jaxlib 0.12.0.1, flax 0.12.12, optax
0.2.8, orbax-checkpoint 0.12.8, dm-pix 0.4.5, ml-collections 1.1.0, clu 0.0.12, chex 0.1.92,
tensorflow-cpu 2.21.0, tensorflow-datasets 4.9.10): tests/test_models.py, test_losses.py,
test_augment.py, test_train.py, test_pretrained.py, test_benchmark.py and
test_accelerator_check.py pass (85 tests); the same with jax/jaxlib 0.11.2 (78, slow test
left out). jax 0.11 and newer need Python >= 3.12.

Extras: ``[data]`` TensorFlow for the tfds and image-folder input pipelines (the embedded
synthetic dataset needs none); ``[test]`` the test suite and its linter, ruff (includes
``[data]``); ``[cuda12]``, ``[cuda13]``, ``[tpu]`` jax with the accelerator plugin;
``[torch]`` PyTorch (CPU wheel 2.13.0 tested) for PyTorch checkpoints in and out
(``python -m leave_one_out.pretrained --import_torch`` / ``--out=FILE.pth``) and the side-by-side
benchmark ``--what=torch``.
"""

from setuptools import find_packages
from setuptools import setup

JAX = ">=0.10.2,<0.13"

INSTALL_REQUIRES = [
  f"jax{JAX}",
  f"jaxlib{JAX}",
  "flax>=0.12.8,<0.13",
  "optax>=0.2.8,<0.3",
  "dm-pix>=0.4.5,<0.5",
  "orbax-checkpoint>=0.12.8,<0.13",
  "ml-collections>=1.1.0,<1.2",
  "clu>=0.0.12,<0.0.13",
  "chex>=0.1.92,<0.2",
  "etils[epath]>=1.15",
  "tensorflow-datasets>=4.9.10,<4.10",
  "tensorboard",  # TensorBoard summaries (its event-file writer; no TensorFlow needed)
  "importlib_resources",  # tfds
  "matplotlib",  # view grids and charts
  # The digits (leave_one_out.data.digits: the demo's and the claims experiment's data) ship in
  # scikit-learn's wheel; nothing is downloaded.
  "scikit-learn>=1.9.1,<1.10",
  "absl-py",
  "numpy",
  # jax's dtypes (>= 0.5, as jax 0.10-0.12 require). 0.7.0 takes 0.8 s to import beside
  # numpy 2.4 (it registers numpy loops for many more dtypes), 0.6.0 takes 10 ms: a cost
  # every process that imports jax pays (the CLI, each evaluation, each test subprocess).
  "ml_dtypes>=0.5,<0.7",
]

DATA = ["tensorflow-cpu>=2.21,<2.22"]

setup(
  name="leave_one_out",
  version="0.1.0",
  description="LooC (Leave-one-out Contrastive Learning, ICLR 2021) in JAX/Flax",
  packages=find_packages(include=["leave_one_out", "leave_one_out.*"]),
  python_requires=">=3.11",
  install_requires=INSTALL_REQUIRES,
  extras_require={
    "data": DATA,
    "test": DATA + ["pytest", "pytest-xdist", "scikit-image", "ruff>=0.17,<0.18"],
    "cuda12": [f"jax[cuda12]{JAX}"],
    "cuda13": [f"jax[cuda13]{JAX}"],
    "tpu": [f"jax[tpu]{JAX}"],
    "photos": ["scikit-image"],  # leave_one_out.data.photos: scikit-image's sample photographs
    "torch": ["torch>=2.13,<2.15"],
  },
)
