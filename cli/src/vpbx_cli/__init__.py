"""The vpbx command line."""
