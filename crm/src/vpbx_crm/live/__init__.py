"""The workspace's live feed: screen pops, call events and agent states over a WebSocket.

A non-durable tail of the nodes' call-event stream (``hub.LiveHub``), kept apart from the
durable reader in ``events/`` (which does database work per event): a screen pop must reach
the browser in a few milliseconds, and one lost while the CRM restarts is harmless.
"""
