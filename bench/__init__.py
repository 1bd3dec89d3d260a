"""Spoc's benchmarks (not tests: they measure and report, they assert nothing)."""
