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
cannot() {
    echo "install-browser: CANNOT install Debian's chromium ($1); the dashboard's browser test will not run." \
         "Install it yourself: apt-get install -y chromium" >&2
    exit 0
}
command -v apt-get >/dev/null 2>&1 || cannot "apt-get not found"
SUDO=""
if [ "$(id -u)" != "0" ]; then
    command -v sudo >/dev/null 2>&1 || cannot "not root and no sudo"
    SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q chromium >/dev/null 2>&1; then
    $SUDO apt-get update -q >/dev/null 2>&1 || cannot "apt-get update failed"
    $SUDO apt-get install -y -q chromium >/dev/null 2>&1 || cannot "apt-get install -y chromium failed"
fi
echo "install-browser: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
