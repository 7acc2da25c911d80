"""The one place the release number is written (setup.cfg reads it too)."""

__version__ = "0.1.0"
