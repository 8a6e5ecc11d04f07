#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (Playwright's own browser downloads do not work here).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >&2
fi
