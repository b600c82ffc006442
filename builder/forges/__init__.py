"""Git hosts ("forges"): one module each, one ``Forge`` object each, listed in ``registry``.

``base.Forge`` is the interface; ``request`` and ``pull_requests`` are the
host-neutral payload helpers. Nothing outside this package reads a host's payload.
"""
