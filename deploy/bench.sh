#!/usr/bin/env bash
# Runs the benchmarks recorded in docs/BENCHMARKS.md. SoftHSM2 must be
# installed (deploy/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1 NUSKHA_REQUIRE_SOFTHSM=1
go test -run '^$' -bench 'BenchmarkIssue|BenchmarkAuthoritySign' -benchtime 3s -count 3 ./internal/pki/ca/
go test -run '^$' -bench 'BenchmarkApprove' -benchtime 3s -count 3 ./internal/enrol/
