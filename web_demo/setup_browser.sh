#!/usr/bin/env bash
# Installs what the browser page's tests need (tests/test_web_demo.py; see README "Try it in a browser"):
# Debian's chromium (headless, driven by puppeteer-core: no browser download), Node.js and npm where missing,
# and the page's npm packages, pinned by web_demo/package-lock.json (npm ci; setup.sh does the same step).
# Any failure is fatal, so a broken set-up never turns into silently skipped tests.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup_browser: apt-get install ${missing[*]}"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# npm ci installs exactly the lock file's versions, and only when node_modules does not already hold them.
if ! (cd "$here" && npm ls --omit=optional >/dev/null 2>&1); then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup_browser: $(chromium --version 2>/dev/null | head -1), node $(node --version)"
