"""SLA's admin endpoints."""
