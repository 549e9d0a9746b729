"""The media engine's building blocks: codecs, tones, prompts, DTMF, paced RTP out, WAV.

Everything here is pure (no sockets) except the scheduler, which owns one timer on the
event loop; calls wire these pieces to their legs.
"""
