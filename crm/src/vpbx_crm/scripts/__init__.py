"""Call scripts: what an agent says on a call to a number (or of a campaign), stage by stage."""
