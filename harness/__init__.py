"""xvpci harness: provisions QEMU, launches guests, runs scenarios, diffs logs.

Knows nothing of vfio-user message layouts; it talks to ``vfio_bridge`` only
through its command line and its transaction logs.
"""
