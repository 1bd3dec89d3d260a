"""Plumbing shared by every Spoc service, free of domain: bus, outbox, inbox, db, settings, ops."""
