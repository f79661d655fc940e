#!/usr/bin/env bash
# The browser tests (the audit's HTML report, the labelling app) drive Debian's chromium through
# playwright; playwright's own browser download needs a host this machine may not reach. Only
# `make test` needs it.
set -euo pipefail
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing chromium (apt)"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >/dev/null 2>&1 \
    || echo "warning: chromium could not be installed; the browser tests need it" >&2
fi
