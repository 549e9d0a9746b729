"""Tenant self-service control API (built in a later issue)."""
