#!/usr/bin/env bash
# Runs the benchmarks recorded in docs/BENCHMARKS.md. SoftHSM2, OpenSSL and
# PostgreSQL must be installed and running (deploy/test.sh sets them up; set
# NUSKHA_TEST_POSTGRES as it does). The million-row benchmarks fill their
# databases first, which takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1 NUSKHA_REQUIRE_SOFTHSM=1
# Issuance (trust core).
go test -run '^$' -bench 'BenchmarkIssue|BenchmarkAuthoritySign' -benchtime 3s -count 3 ./internal/pki/ca/
go test -run '^$' -bench 'BenchmarkApprove' -benchtime 3s -count 3 ./internal/enrol/
# Revocation.
go test -run '^$' -bench 'BenchmarkOCSPOverHTTP' -benchtime 5s -count 3 ./internal/pki/responder/
go test -run '^$' -bench 'BenchmarkPresign/.*/10000' -benchtime 2x -count 3 ./internal/pki/responder/
go test -run '^$' -bench 'BenchmarkRevocationToVisible' -benchtime 2s -count 3 ./internal/publish/
go test -run '^$' -bench 'BenchmarkCheckCRL' -benchtime 2s ./internal/pki/revocation/
go test -run '^$' -bench 'BenchmarkCertificateStatus' -benchtime 2s -timeout 60m ./internal/store/truststore/
go test -run '^$' -bench 'BenchmarkGenerateCRL' -benchtime 3x -timeout 60m ./internal/publish/
# Verifying signed prescriptions.
go test -run '^$' -bench 'BenchmarkVerify$|BenchmarkBareECDSA' -benchtime 3s -count 3 -cpu 1 ./internal/rx/
# Eligibility, the catalogue, the rules engine and the rules service (rxd).
go test -run '^$' -bench . -benchtime 2s -count 3 ./internal/rules/
go test -run '^$' -bench 'BenchmarkLookup|BenchmarkSearch|BenchmarkAt' -benchtime 2s ./internal/catalogue/
go test -run '^$' -bench 'BenchmarkCheck' -benchtime 3s -count 3 ./internal/adjudicate/
NUSKHA_BENCH_REGISTRY=1000000 go test -run '^$' -bench 'BenchmarkImport' -benchtime 1x -timeout 60m ./internal/store/rxstore/
NUSKHA_BENCH_REGISTRY=1000000,10000000 go test -run '^$' -bench 'BenchmarkEligibility' -benchtime 20000x -timeout 120m ./internal/store/rxstore/
