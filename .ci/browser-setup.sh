#!/usr/bin/env bash
# Install what the run browser's tests (tests/ui) drive: Debian's chromium and its chromedriver, headless, plus a
# font for the screenshots (run as root; idempotent, skipped when already installed). Nothing downloads a
# browser build: Selenium is pointed at /usr/bin/chromedriver.
set -euo pipefail

need=()
for pkg in chromium chromium-driver fonts-liberation; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "browser-setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "browser-setup: $(chromium --version 2>/dev/null | head -1), $(chromedriver --version | head -1)"
