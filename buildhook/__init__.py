"""The ``buildhook`` command: runs the web app, the worker and admin commands."""
