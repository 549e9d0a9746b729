"""Carrier trunks: the tenant's own (``/v1/trunks``) and the platform's (Trunk manifests)."""
