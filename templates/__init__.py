"""The dashboard's Jinja templates: shipped as package data of ``webhooks`` (``webhooks.templates``)."""
