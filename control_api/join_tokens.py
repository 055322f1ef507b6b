"""Re-export: the control plane mints join tokens with the shared implementation."""

from openvisit.join_tokens import JoinClaims, JoinTokenSigner, JoinTokenVerifier

__all__ = ["JoinClaims", "JoinTokenSigner", "JoinTokenVerifier"]
