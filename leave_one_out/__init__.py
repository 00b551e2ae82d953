"""LooC: Leave-one-out Contrastive Learning in JAX/Flax."""

__version__ = "0.1.0"

__all__ = ["load_pretrained", "load_backbone", "extract_features"]


def __getattr__(name):
  # Lazy: `import leave_one_out` stays light; jax and orbax load on first use.
  if name in ("load_pretrained", "load_backbone"):
    from leave_one_out import pretrained  # pylint: disable=import-outside-toplevel

    return getattr(pretrained, name)
  if name == "extract_features":
    from leave_one_out import extract  # pylint: disable=import-outside-toplevel

    return extract.extract_features
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
