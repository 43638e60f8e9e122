"""The version of labellint."""

__version__ = "0.1.0"
