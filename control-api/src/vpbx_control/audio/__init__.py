"""Serving stored audio (call recordings, voice messages): one implementation for both.

``store.py`` is the API's handle on the object store, ``serve.py`` answers a GET for one
object: Ogg/Opus as stored with HTTP Range, or decoded to WAV.
"""
