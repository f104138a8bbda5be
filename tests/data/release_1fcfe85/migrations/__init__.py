"""Numbered, forward-only, run-once SQL migrations."""
