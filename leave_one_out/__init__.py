"""LooC: Leave-one-out Contrastive Learning in JAX/Flax."""

__version__ = "0.1.0"
