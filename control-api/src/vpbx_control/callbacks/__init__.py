"""Queue callbacks: callers who asked to be called back, their places and outcomes."""
