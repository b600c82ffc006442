"""Triggers and their build rules: creating and editing them, tags, path filters, schedules, clone URLs."""
