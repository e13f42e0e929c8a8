#!/bin/sh
# Run in the macOS guest: what the window kext published and which drivers bound.
set -e
echo "== window bridge"
ioreg -r -c XvpciWindow -l -d 1 | grep -E '"(IOPCIMatch|IOClass|reg)"|XvpciWindow' || echo "XvpciWindow not loaded"
echo "== child nubs (IOPCIDevice under the bridge) and their drivers"
ioreg -r -c XvpciWindow -t -d 3 | grep -E 'IOPCIDevice|<class [A-Za-z]+,' || true
echo "== kext log"
log show --last 10m --predicate 'eventMessage CONTAINS "xvpci-window"' --style compact 2>/dev/null | tail -20 || true
