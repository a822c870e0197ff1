#!/usr/bin/env bash
# Installs Debian's Chromium (/usr/bin/chromium), which the dashboard's browser test drives through Playwright
# (tests/test_dashboard_browser.py). Never `playwright install`: that downloads a browser from the network.
# Idempotent; uses sudo only when not root; says clearly why when it cannot (the test then skips, loudly, or fails
# under CI).
set -uo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "install-browser: chromium already installed ($(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium))"
    exit 0
fi
. "$(dirname "$0")/apt-install.sh"
apt_install install-browser chromium "the dashboard's browser test"
echo "install-browser: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
