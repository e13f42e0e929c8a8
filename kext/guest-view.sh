#!/bin/sh
# Run in the macOS guest: what the window kext published and which drivers bound.
# Expected tree: IOPCIDevice (a77f) > XvpciWindow > xvpci-window-bus > XvpciHostBridge > IOPCIDevice (child)
set -e
echo "== window driver and its host bridge"
ioreg -r -c XvpciWindow -l -d 1 | grep -E '"(IOPCIMatch|IOClass|reg)"|XvpciWindow' || echo "XvpciWindow not loaded"
echo "== child nubs (IOPCIDevice under XvpciHostBridge) and their drivers"
ioreg -r -c XvpciWindow -t -d 6 | grep -E 'XvpciHostBridge|IOPCIDevice|<class [A-Za-z]+,' || true
echo "== child MSI-X (pci-msi-limit set by the kext, IOPCIMSIMode once a driver registered)"
ioreg -r -c XvpciHostBridge -l -d 2 | grep -E '"(pci-msi-flags|pci-msi-limit|IOPCIMSIMode|IOInterruptSpecifiers)"' || true
echo "== kext log"
log show --last 10m --predicate 'eventMessage CONTAINS "xvpci-window"' --style compact 2>/dev/null | tail -20 || true
