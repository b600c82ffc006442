"""The Celery side: the app wired to a Flask app, and thin tasks over ``builder``."""
