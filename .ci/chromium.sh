#!/usr/bin/env bash
# Headless Chromium from Debian, for tests/test_html_browser.py (which fails under CI
# without it).  Run as root; does nothing when chromium is already installed.
set -euo pipefail
command -v chromium >/dev/null && exit 0
export DEBIAN_FRONTEND=noninteractive
{ apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } \
  &>/tmp/chromium-apt.log || { tail -n 30 /tmp/chromium-apt.log >&2; echo "[chromium] apt-get failed" >&2; exit 1; }
echo "[chromium] installed $(chromium --version)"
