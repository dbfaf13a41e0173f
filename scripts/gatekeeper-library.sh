#!/usr/bin/env bash
# Runs every suite of Gatekeeper's published library through
# `otel-admission policy verify`, as `gator verify` runs them (issue 15).
#
#   scripts/gatekeeper-library.sh [LIBRARY_CHECKOUT]
#
# Without an argument, clones github.com/open-policy-agent/gatekeeper-library
# into target/gatekeeper-library (this needs network to GitHub, which CI does
# not have; the library is not vendored: it is theirs, not ours).
set -euo pipefail
cd "$(dirname "$0")/.."
lib="${1:-target/gatekeeper-library}"
if [ ! -d "$lib/library" ]; then
  git clone --depth 1 https://github.com/open-policy-agent/gatekeeper-library "$lib"
fi
cargo run --locked --quiet -- policy verify "$lib/library"
