"""Marker: the guest files are installed as package ``harness.assets.guests`` (see setup.py)."""
