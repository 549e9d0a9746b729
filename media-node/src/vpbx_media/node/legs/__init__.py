"""Call legs: one side of a call each, behind one interface (SIP now; trunk and WebRTC later)."""
