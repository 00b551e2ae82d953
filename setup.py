"""Installs leave_one_out with the exact versions it is tested against."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "dm-pix==0.4.5",
    "orbax-checkpoint==0.12.8",
    "ml-collections==1.1.0",
    "clu==0.0.12",
    "chex==0.1.92",
    "tensorflow-cpu==2.21.0",
    "tensorflow-datasets==4.9.10",
    "tensorboard",  # clu's metric writers
    "importlib_resources",  # tfds
    "matplotlib",  # view grids and charts
    "absl-py",
    "numpy",
]

setup(
    name="leave_one_out",
    version="0.1.0",
    description="LooC (Leave-one-out Contrastive Learning, ICLR 2021) in JAX/Flax",
    packages=find_packages(include=["leave_one_out", "leave_one_out.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest", "pytest-xdist", "scikit-image"],
        "photos": ["scikit-image"],  # leave_one_out.photos: scikit-image's sample photographs
    },
)
