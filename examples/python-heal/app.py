"""A tiny service configuration loader: the code under test of the example pipeline."""

import yaml


def load(text):
    """Parses a YAML configuration and fills in defaults."""
    config = yaml.safe_load(text) or {}
    config.setdefault("port", 8080)
    config.setdefault("workers", 2)
    return config
