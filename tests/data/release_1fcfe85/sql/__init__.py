"""Idempotent SQL definitions (functions, views, grants), re-applied by every `semsql init`."""
