"""Conference rooms (/v1/conference-rooms): an extension callers dial (or are routed to) to
talk together; the media nodes mix them."""
