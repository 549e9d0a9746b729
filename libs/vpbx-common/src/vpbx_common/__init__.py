"""Shared schemas and helpers used by every vpbx component."""
