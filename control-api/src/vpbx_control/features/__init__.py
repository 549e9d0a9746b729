"""/v1/feature-codes: what the tenant's phones dial for pickup, park and monitoring."""
