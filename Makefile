# Keyward — the two commands are `make run` and `make test`. See README.md.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := $(HOME)/.cargo/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export CARGO_TERM_COLOR ?= never

KEYWARD_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
export KEYWARD_TEST_DATABASE_URL
LOGS := target/test-logs

.PHONY: run demo test tools test-tools build fmt-check lint unit e2e bench fuzz soak clean help

help:
	@echo "make run    build the release site and serve it on http://127.0.0.1:3000 (SQLite in ./data)"
	@echo "make demo   like make run, offline: every provider is the in-repo mock provider"
	@echo "make test   formatting, lints, unit + integration tests (SQLite and PostgreSQL), wasm build, end-to-end"
	@echo "make bench  benchmarks (not part of make test)"
	@echo "make fuzz   the fuzz targets, FUZZ_SECS each (not part of make test; it replays the corpus)"
	@echo "make soak   SOAK_MINUTES at 80% of the maximum with faults and a PostgreSQL restart (root)"

tools:
	@.ci/tools.sh build

test-tools:
	@.ci/tools.sh test

## The release site: server binary target/release/keyward + target/site (wasm, JS, CSS, assets).
build: tools
	cargo leptos build --release

run: build
	@mkdir -p data
	@if [ -z "$${KEYWARD_MASTER_KEY_FILE:-}" ] && [ -z "$${KEYWARD_MASTER_KEY:-}" ] && [ ! -f data/master.key ]; then \
	  echo; \
	  echo "************************************************************************"; \
	  echo "* QUICKSTART: no master key configured, creating data/master.key (0600) *"; \
	  echo "* This key protects every provider key in the vault. Back it up.       *"; \
	  echo "* Production: create one with 'keyward gen-master-key --out FILE' and   *"; \
	  echo "* set KEYWARD_MASTER_KEY_FILE; the server never generates one itself.   *"; \
	  echo "************************************************************************"; \
	  echo; \
	  target/release/keyward gen-master-key --out data/master.key; \
	fi
	KEYWARD_MASTER_KEY_FILE=$${KEYWARD_MASTER_KEY_FILE:-data/master.key} \
	KEYWARD_SITE_ROOT=$${KEYWARD_SITE_ROOT:-target/site} \
	  target/release/keyward serve

## The offline demo: `make run`, with the mock provider standing in for every LLM provider
## (started on 127.0.0.1:9100, allowlisted, and set as every provider's base URL — audited), on
## its own database (data/demo.db) so that the real one never points at the mock.
DEMO_MOCK := 127.0.0.1:9100
demo: build
	@mkdir -p data
	@test -f data/master.key || target/release/keyward gen-master-key --out data/master.key
	@target/release/keyward mock-provider --bind $(DEMO_MOCK) --tokens-per-sec 25 & echo $$! > data/mock.pid; \
	trap 'kill $$(cat data/mock.pid) 2>/dev/null; rm -f data/mock.pid' EXIT; \
	export KEYWARD_DATABASE_URL=sqlite://data/demo.db KEYWARD_ALLOWED_PRIVATE_UPSTREAMS=$(DEMO_MOCK) KEYWARD_MASTER_KEY_FILE=$${KEYWARD_MASTER_KEY_FILE:-data/master.key} \
	  KEYWARD_SITE_ROOT=$${KEYWARD_SITE_ROOT:-target/site}; \
	for p in openai groq deepseek gemini mistral together openrouter nvidia; do \
	  target/release/keyward provider set $$p --base-url http://$(DEMO_MOCK)/v1 --default-model mock-small; done; \
	target/release/keyward provider set anthropic --base-url http://$(DEMO_MOCK) --default-model mock-small; \
	echo "demo: every provider is the mock at http://$(DEMO_MOCK); any key works except ones containing"; \
	echo "      invalid, noquota, ratelimit, unavailable (they fail on purpose)"; \
	target/release/keyward serve

fmt-check:
	cargo fmt --all --check

## Clippy per package and per target, never --workspace --all-features (that would unify the
## app's ssr and hydrate features).
lint:
	cargo clippy -p keyward --all-targets -- -D warnings
	cargo clippy -p keyward --target wasm32-unknown-unknown -- -D warnings
	cargo clippy -p keyward-migration --all-targets -- -D warnings
	cargo clippy -p keyward-app --features ssr --all-targets -- -D warnings
	cargo clippy -p keyward-app --features hydrate --target wasm32-unknown-unknown -- -D warnings
	cargo clippy -p keyward-frontend --target wasm32-unknown-unknown -- -D warnings
	cargo clippy -p keyward-backend --all-targets -- -D warnings
	cargo clippy -p keyward-server --all-targets -- -D warnings

## Unit and integration tests; every database test runs on SQLite and on PostgreSQL.
unit:
	@mkdir -p $(LOGS)
	cargo test -p keyward -p keyward-migration -p keyward-app -p keyward-backend -p keyward-server --features keyward-app/ssr 2>&1 | tee $(LOGS)/cargo.log

## End-to-end: Playwright (playwright-core) driving Debian's Chromium against the release server.
e2e: build
	@mkdir -p $(LOGS)
	node end2end/run.mjs 2>&1 | tee $(LOGS)/e2e.log

test: test-tools fmt-check lint unit e2e
	@.ci/summary.sh $(LOGS)/cargo.log $(LOGS)/e2e.log

## The gateway benchmark against LiteLLM and Portkey (writes docs/BENCHMARKS.md), then the
## micro-benchmarks. Not part of `make test` (its smoke run is). BENCH_ARGS=--quick for a short run;
## BENCH_ARGS="--before PATH" measures an earlier build in the same run (a column of its own).
BENCH_ARGS ?=
## TAIL_ARGS=--before PATH measures an earlier build in the same run (docs/TAIL.md).
TAIL_ARGS ?=
bench: build
	bench/peers.sh
	cargo build --release -p keyward-server --example bench
	taskset -c 1 target/release/examples/bench --keyward target/release/keyward --out docs/BENCHMARKS.md $(BENCH_ARGS)
	cargo build --release -p keyward-server --example tail
	target/release/examples/tail --keyward target/release/keyward --out docs/TAIL.md $(TAIL_ARGS)
	cargo bench -p keyward-server

## Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the parsers and translators; grows and
## minimises server/fuzz/corpus, which `make test` replays. Not part of `make test`.
fuzz:
	server/fuzz/run.sh

## The soak run: SOAK_MINUTES (default 10) at 80 % of the measured maximum through the public API,
## with injected provider faults and one restart of a private PostgreSQL; writes
## docs/RELIABILITY.md. Needs root (it runs that PostgreSQL as the postgres user). Not in make test.
SOAK_MINUTES ?= 10
soak: build
	cargo build --release -p keyward-server --example soak
	target/release/examples/soak --keyward target/release/keyward --out docs/RELIABILITY.md --minutes $(SOAK_MINUTES)

clean:
	cargo clean
	rm -rf node_modules
