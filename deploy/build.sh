#!/usr/bin/env bash
# Builds trustd, rxd and rxctl into bin/, stamped with the commit they are
# built from, so that `trustd version` (and rxd's, rxctl's) can name it.
#
# The go command stamps the commit itself only when it can: not with
# -buildvcs=false in GOFLAGS (as on some build machines), nor in a git
# worktree. So the commit, and whether the tree had uncommitted changes, are
# also handed to the linker. Outside a git checkout the binaries say
# "unknown".
#
#   deploy/build.sh                  build bin/trustd, bin/rxd, bin/rxctl
#   deploy/build.sh -print-ldflags   print the linker flags only
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=github.com/nuskha/nuskha/internal/buildinfo
ldflags=
if commit=$(git rev-parse HEAD 2>/dev/null); then
  modified=false
  if [ -n "$(git status --porcelain 2>/dev/null)" ]; then modified=true; fi
  ldflags="-X $pkg.commit=$commit -X $pkg.modified=$modified"
fi
if [ "${1:-}" = -print-ldflags ]; then
  echo "$ldflags"
  exit 0
fi
mkdir -p bin
CGO_ENABLED=1 go build -ldflags "$ldflags" -o bin/ ./cmd/...
