"""The tenant's people as the workspace shows them (owners, assignees)."""
