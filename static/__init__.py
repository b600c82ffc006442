"""The dashboard's CSS and JavaScript: shipped as package data of ``webhooks`` (``webhooks.static``)."""
