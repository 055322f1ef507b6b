"""The control plane: accounts, facilities, booking, billing and the media-plane seams."""
