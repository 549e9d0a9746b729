"""The tenant's outbound policy: what its people may dial out, set by the platform operator."""
