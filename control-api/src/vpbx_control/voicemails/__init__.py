"""Voice messages: the inbox rows the call-event consumer writes, and /v1/voicemails."""
