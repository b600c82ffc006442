"""Encryption of stored secrets (webhook secrets, registry passwords).

Values are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under a key
derived from ``BUILDHOOK_SECRET_KEY``; the database only ever holds tokens.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(b"buildhook-secrets:" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except InvalidToken:
            raise ValueError(
                "stored secret cannot be decrypted: BUILDHOOK_SECRET_KEY differs "
                "from the key it was stored with"
            ) from None
