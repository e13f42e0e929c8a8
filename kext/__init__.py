"""Marker: the kext sources are installed as package ``harness.assets.kext`` (see setup.py)."""
