"""The selective forwarding unit: forwards encoded media between a visit's participants.

Built in the media-plane issue; the control plane already exposes its seams (join tokens,
visit event reports) in control_api.routes.media.
"""
