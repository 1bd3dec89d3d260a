"""Intake's public HTTP API and portal pages."""
