"""Live monitoring: hidden, receive-only consumers for officers (never on privileged visits)."""
