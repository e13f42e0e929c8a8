# STAND-IN helper (xvpci tests): the scenario the test asked for.
scenario=$(cat /tmp/standin-scenario 2>/dev/null || echo ok)
