"""Spoc's command line and embedded default: the one place that knows all four services."""
