#!/usr/bin/env bash
# Installs bubblewrap (bwrap), the sandbox's strongest isolation (see evoforge/experiment/isolation.py).
# Idempotent; a no-op with a message when bwrap is already there, when not root, or without apt-get.
set -euo pipefail

if command -v bwrap >/dev/null 2>&1; then
    echo "install-sandbox-tools: bwrap already installed ($(bwrap --version))"
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install-sandbox-tools: not root; skipping (install bubblewrap yourself for the strongest sandbox)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-sandbox-tools: apt-get not found; skipping (install bubblewrap with your package manager)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q bubblewrap >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q bubblewrap >/dev/null
fi
echo "install-sandbox-tools: installed $(bwrap --version)"
