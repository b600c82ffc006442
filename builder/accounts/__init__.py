"""Users, API tokens, sign-in sessions and throttling, passwords, the audit log."""
