"""SIP edge and tenant media node (one package, two roles)."""
