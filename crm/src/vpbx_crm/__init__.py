"""CRM service (built in a later issue)."""
