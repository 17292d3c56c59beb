# upshift: the two commands are `make demo` and `make test`.
GO        ?= go
BIN       := bin
PLUGINS   := $(notdir $(patsubst %/,%,$(dir $(wildcard plugins/*/main.go))))
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 5s
PLUGIN_FLAGS := -trimpath -ldflags "-s -w"

.PHONY: all setup build test unit race fuzz docs e2e drills bench demo demo-down proto docs fmt vet clean vuln report-check

all: build

setup:
	@./.ci/setup

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/upshift ./cmd/upshift
	@if [ -d cmd/platformd ]; then $(GO) build -o $(BIN)/platformd ./cmd/platformd; fi
	@# Plugins: static, stripped binaries launch faster (less to hash, less to load).
	@for p in $(PLUGINS); do echo "build $(BIN)/upshift-plugin-$$p"; CGO_ENABLED=0 $(GO) build $(PLUGIN_FLAGS) -o $(BIN)/upshift-plugin-$$p ./plugins/$$p || exit 1; done

# make test: everything CI checks, from a fresh clone.
test: setup build vet unit fuzz

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Every package runs under the race detector: the runner walks steps
# concurrently, plugins serve concurrent calls, and the tests drive real
# processes from several goroutines.
unit:
	$(GO) test -count=1 -race -timeout 15m ./...

race: unit

# A short fuzz run of the playbook loader: no input may panic.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./playbooks

# The full matrix: every load balancer with every database (make test runs a
# subset), plus everything make test runs.
e2e: setup build
	UPSHIFT_E2E_FULL=1 $(GO) test -count=1 -timeout 15m -run 'Demo|Negative|FailedMigration' -v ./cmd/upshift

# Failure drills on the real lab under live traffic (cmd/upshift/drills_test.go):
# each prints its figures (requests, failed, lost writes, duration) as DRILL
# lines. make test (unit) runs the short ones only.
drills: setup build
	UPSHIFT_DRILLS=1 $(GO) test -count=1 -timeout 15m -run '^TestDrill' -v ./cmd/upshift

# make bench: every benchmark (those longer than a second run once; the
# database ones copy 1 GB: UPSHIFT_BENCH_DB_SIZE, default 1GB here, takes
# 10M or a row count, 20000 for a quick look),
# Ansible's reference when ansible-playbook is installed, then one table of
# the figures we hold ourselves to (internal/benchtable); the raw output
# stays in bin/bench.txt. About 40 minutes on 2 idle cores.
UPSHIFT_BENCH_DB_SIZE ?= 1GB
bench: setup build
	@echo "make bench: writing bin/bench.txt (UPSHIFT_BENCH_DB_SIZE=$(UPSHIFT_BENCH_DB_SIZE)); machine: $$(nproc) cores, load $$(cut -d' ' -f1-3 /proc/loadavg)"
	@UPSHIFT_BENCH_DB_SIZE=$(UPSHIFT_BENCH_DB_SIZE) $(GO) test -run '^$$' -bench . -benchmem -timeout 120m ./... > $(BIN)/bench.txt 2>&1; status=$$?; \
	  grep -E '^(Benchmark|ok|FAIL|---|pkg:|\s+bench_)' $(BIN)/bench.txt; \
	  echo; $(GO) run ./internal/benchtable < $(BIN)/bench.txt; exit $$status

# make demo: a fresh 3-node lab behind HAProxy, upgraded from version 1 to 2
# by the shipped playbook under live traffic; the lab stays up afterwards.
demo: setup build
	$(BIN)/upshift lab demo --dir lab

demo-down:
	@if [ -x $(BIN)/upshift ]; then $(BIN)/upshift lab down --dir lab; fi

# The report of a real 50-node run (testkit plugin), `upshift report`,
# screenshot in headless Chromium (Debian's chromium: apt-get install -y
# chromium): bin/report-check/report-50.png (.html beside it), and its
# figures on one line.
report-check: build
	mkdir -p $(BIN)/report-check
	UPSHIFT_REPORT_PNG=$(CURDIR)/$(BIN)/report-check/report-50.png $(GO) test -count=1 -timeout 10m -run '^TestReportOf50Nodes$$' -v ./cmd/upshift > $(BIN)/report-check/test.log 2>&1; \
	rc=$$?; grep -E 'report-check:|^(--- |ok|FAIL)' $(BIN)/report-check/test.log; exit $$rc

# Plugin reference pages, generated from the plugins' own schemas.
docs: build
	$(BIN)/upshift plugins docs --bin $(BIN) --out docs/plugins/reference

proto:
	./plugins/proto/generate.sh

fmt:
	gofmt -w $$(git ls-files '*.go')
	$(BIN)/upshift fmt --recursive --skip-invalid playbooks

# Known vulnerabilities reachable from our code (standard library included),
# by govulncheck at a pinned version, installed into $(go env GOPATH)/bin on
# demand (a tool, not a dependency of the module). When vuln.go.dev cannot be
# reached, the database is built from the golang.org/x/vulndb module (its
# data/osv folder, through the module proxy) with vulndb's own indexdb, once
# per vulndb version, under $(go env GOCACHE)/upshift-vulndb. VULNDB=<url>
# chooses the database; VULNDB_VERSION the module version (default latest).
# It scans with the go on PATH: with GOTOOLCHAIN=local that may be older than
# go.mod's toolchain line, and it says so.
GOVULNCHECK_VERSION ?= v1.10.0
VULNDB_VERSION      ?= latest
vuln:
	@set -e; \
	gobin=$$($(GO) env GOPATH)/bin; \
	if ! "$$gobin/govulncheck" -version 2>/dev/null | grep -q 'govulncheck@$(GOVULNCHECK_VERSION)$$'; then \
		echo "install govulncheck $(GOVULNCHECK_VERSION) into $$gobin"; \
		GOBIN="$$gobin" $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION); \
	fi; \
	db="$(VULNDB)"; \
	if [ -z "$$db" ]; then \
		if curl -fsS --max-time 10 -o /dev/null https://vuln.go.dev/index/db.json 2>/dev/null || \
		   wget -q -T 10 -O /dev/null https://vuln.go.dev/index/db.json 2>/dev/null; then \
			db=https://vuln.go.dev; \
		else \
			ver=$$($(GO) list -m -f '{{.Version}}' golang.org/x/vulndb@$(VULNDB_VERSION)) || { \
				echo "vuln: vuln.go.dev is unreachable and so is golang.org/x/vulndb through GOPROXY: no vulnerability database, nothing scanned" >&2; exit 1; }; \
			out=$$($(GO) env GOCACHE)/upshift-vulndb/$$ver; \
			if [ ! -f "$$out/index/db.json" ]; then \
				src=$$($(GO) mod download -json golang.org/x/vulndb@$$ver | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$$/\1/p'); \
				if [ ! -d "$$src/data/osv" ]; then echo "vuln: golang.org/x/vulndb@$$ver has no data/osv folder: cannot build a database" >&2; exit 1; fi; \
				echo "vuln.go.dev is unreachable: building the database from golang.org/x/vulndb@$$ver (indexdb)"; \
				GOBIN="$$gobin" $(GO) install golang.org/x/vulndb/cmd/indexdb@$$ver; \
				rm -rf "$$out.tmp"; "$$gobin/indexdb" -vulns "$$src/data/osv" -out "$$out.tmp"; \
				rm -rf "$$out"; mv "$$out.tmp" "$$out"; \
			fi; \
			db="file://$$out"; \
			echo "vulnerability database: golang.org/x/vulndb@$$ver ($$(ls "$$out/ID" | grep -c "\.json$$") entries) at $$out"; \
		fi; \
	fi; \
	want=$$(sed -n 's/^toolchain //p' go.mod); have=$$($(GO) env GOVERSION); \
	if [ -n "$$want" ] && [ "$$want" != "$$have" ]; then \
		echo "note: scanning the standard library of $$have, not go.mod's toolchain $$want (GOTOOLCHAIN=$$($(GO) env GOTOOLCHAIN))"; \
	fi; \
	"$$gobin/govulncheck" -db "$$db" ./...

clean:
	rm -rf $(BIN)
