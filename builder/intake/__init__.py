"""From an inbound webhook to a recorded delivery and the builds it plans."""
