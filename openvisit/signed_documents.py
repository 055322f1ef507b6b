"""Documents signed with the server's Ed25519 key: privilege attestations (P3) and recording
manifests (R2). Anyone with the public key (GET /v1/media/public-key) can check one offline."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SignatureError(Exception):
    pass


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_document(key: Ed25519PrivateKey, document: dict[str, Any]) -> dict[str, Any]:
    """`{"document": ..., "algorithm": "Ed25519", "signature": base64}` over the canonical JSON."""
    return {"document": document, "algorithm": "Ed25519",
            "signature": base64.b64encode(key.sign(canonical(document))).decode()}


def verify_document(public_key: Ed25519PublicKey, signed: dict[str, Any]) -> dict[str, Any]:
    """The document if its signature is good; SignatureError otherwise."""
    try:
        document, signature = signed["document"], base64.b64decode(signed["signature"], validate=True)
        public_key.verify(signature, canonical(document))
    except (KeyError, TypeError, ValueError, InvalidSignature) as exc:
        raise SignatureError("the signature does not match the document") from exc
    if not isinstance(document, dict):
        raise SignatureError("not a signed document")
    return document
