"""Calls through the node: the call state machine (``call``), its facts (``facts``) and
what it needs from the node (``host``)."""
