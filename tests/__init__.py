"""Tests: run with `python -m pytest -q tests` from the repository root."""
