"""vfio_bridge: a pure-Python vfio-user server, client and device-model API.

Knows nothing of QEMU command lines or guests; see ``harness`` for those.
"""

__version__ = "0.1.0"
