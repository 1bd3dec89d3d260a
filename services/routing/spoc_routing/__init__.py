"""Spoc routing: triage — priority from impact × urgency, a group and a front-line owner."""
