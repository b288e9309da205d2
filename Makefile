# Gatehouse developer tasks. Every target works on a fresh clone with Go installed.

GO        ?= go
BIN       ?= bin/gatehouse
HTTP_ADDR ?= 127.0.0.1:8080

# FIRST_BUILD ends the line that each compiling target prints first, since
# the first build compiles every dependency and prints nothing until done.
FIRST_BUILD = (the first build takes a few minutes)...

.PHONY: all build run test test-short vet bench clean

all: vet test build

build:
	@echo "building gatehouse $(FIRST_BUILD)"
	$(GO) build -o $(BIN) ./cmd/gatehouse

## run: start Gatehouse in dev mode (in-memory storage, built-in dev issuer, loopback only)
run:
	@echo "building gatehouse $(FIRST_BUILD)"
	$(GO) run ./cmd/gatehouse serve --dev --http-addr $(HTTP_ADDR)

## test: vet and run every test, including the end-to-end tests in integration/;
## with GATEHOUSE_TEST_DATABASE_URL set, the end-to-end suite runs again on PostgreSQL
test: vet
	@echo "building and running every test with the race detector $(FIRST_BUILD)"
	$(GO) test -count=1 -race -timeout 20m ./...
	@if [ -n "$$GATEHOUSE_TEST_DATABASE_URL" ]; then \
		echo "--- integration suite again, on PostgreSQL"; \
		GATEHOUSE_TEST_DATASTORE=postgres $(GO) test -count=1 -timeout 20m ./integration/; \
	fi

test-short:
	@echo "building and running the short tests $(FIRST_BUILD)"
	$(GO) test -count=1 -short ./...

vet:
	@echo "building gatehouse for go vet $(FIRST_BUILD)"
	$(GO) vet ./...

## bench: run the Go benchmarks of the hot paths, then gatehouse-bench, which
## compares Gatehouse with SpiceDB on generated datasets and writes a Markdown
## report to $(BENCH_OUT). Without GATEHOUSE_TEST_DATABASE_URL, the PostgreSQL
## runs use a throwaway cluster from scripts/test-postgres.sh, stopped at the end.
BENCH_FLAGS ?= -sizes 10k,100k,1m -datastores memory,postgres -duration 10s
BENCH_OUT   ?= bin/bench-report.md
bench:
	@echo "building the benchmarks $(FIRST_BUILD)"
	$(GO) test -run '^$$' -bench . -benchmem ./...
	@mkdir -p $(dir $(BENCH_OUT))
	@set -e; \
	if [ -z "$$GATEHOUSE_TEST_DATABASE_URL" ] && { echo "$(BENCH_FLAGS)" | grep -q postgres || ! echo "$(BENCH_FLAGS)" | grep -q -- -datastores; }; then \
		trap 'scripts/test-postgres.sh stop' EXIT; \
		eval "$$(scripts/test-postgres.sh start)"; \
	fi; \
	$(GO) run ./cmd/gatehouse-bench $(BENCH_FLAGS) -out $(BENCH_OUT) \
		-label "commit $$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$$(git diff --quiet HEAD 2>/dev/null || echo ' with local changes')"

clean:
	rm -rf bin
