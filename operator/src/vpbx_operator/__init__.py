"""Kubernetes operator for Tenant and Number resources; desired state as pure functions."""
