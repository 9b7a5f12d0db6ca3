#!/usr/bin/env bash
# Creates .venv beside this script and installs melkit (editable) with pinned, known-good versions.
# Works on a fresh Debian machine where the system Python is externally managed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"
echo "melkit installed in $here/.venv  (activate: source .venv/bin/activate)"
# The browser page (web_demo/, README "Try it in a browser"): LiteRT.js and the tests' browser driver, exactly
# the versions web_demo/package-lock.json pins. Skipped with a note where Node.js and npm are not installed.
if command -v npm >/dev/null; then
  (cd web_demo && npm ci --no-audit --no-fund --loglevel=error)
  echo "web_demo: npm packages installed (melkit web serves the page)"
else
  echo "npm not found: the browser page (web_demo/) is not set up; install Node.js and npm, then run setup.sh again"
fi
# --with-mediapipe: a separate venv holding only MediaPipe, a real third-party client of melkit's .tflite
# files for the tests (its absl/protobuf pins clash with tensorflow-model-optimization, so never in .venv).
if [ "${1:-}" = "--with-mediapipe" ]; then
  [ -x .venv-mediapipe/bin/python ] || "$python" -m venv .venv-mediapipe
  .venv-mediapipe/bin/python -m pip install --quiet --upgrade pip
  .venv-mediapipe/bin/python -m pip install --quiet "mediapipe==1.2.3"
  echo "MediaPipe client venv in $here/.venv-mediapipe"
fi
