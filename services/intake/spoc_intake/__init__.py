"""Spoc intake: the one front door — the ticket record and what requesters and agents see."""
