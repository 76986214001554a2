"""Run configuration: schema (`schema.py`) and YAML loading with overrides (`loader.py`)."""

from semhpc.config.loader import Config, load_config, save_config

__all__ = ["Config", "load_config", "save_config"]
