"""The tenant's prompt library (/v1/prompts) and what every prompt upload shares."""
