"""Routing's admin endpoints."""
