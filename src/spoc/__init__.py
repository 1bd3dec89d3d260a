"""Spoc's command line and embedded default: the one place that knows all four services."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The installed distribution's version: the one number `spoc --version`, the APIs and
    # the packages agree on.
    __version__ = version("spoc")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
