# The two set-up commands of README.md.
.PHONY: run test build bench

run: ## start trustd and rxd on the embedded default (SQLite, encrypted key files)
	bash deploy/run.sh

test: ## install SoftHSM2, OpenSC, PostgreSQL and Node.js as needed, then run every test
	bash deploy/test.sh

build: ## bin/trustd, bin/rxd and bin/rxctl, stamped with the commit (see `bin/rxd version`)
	bash deploy/build.sh

bench: ## the benchmarks recorded in docs/BENCHMARKS.md
	bash deploy/bench.sh
