"""buildhook's domain: settings, models, push events, clone, build, push.

Nothing in this package imports Flask or Celery.
"""
