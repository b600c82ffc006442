"""Builds once queued: hand-off to the broker, actions, history, fair share, manual and scheduled runs."""
