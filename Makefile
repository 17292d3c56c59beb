# upshift: the two commands are `make demo` and `make test`.
GO        ?= go
BIN       := bin
PLUGINS   := $(notdir $(patsubst %/,%,$(dir $(wildcard plugins/*/main.go))))
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 5s
PLUGIN_FLAGS := -trimpath -ldflags "-s -w"

.PHONY: all setup build test unit race fuzz docs e2e drills bench demo demo-down proto docs fmt vet clean

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

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# make demo: a fresh 3-node lab behind HAProxy, upgraded from version 1 to 2
# by the shipped playbook under live traffic; the lab stays up afterwards.
demo: setup build
	$(BIN)/upshift lab demo --dir lab

demo-down:
	@if [ -x $(BIN)/upshift ]; then $(BIN)/upshift lab down --dir lab; fi

# Plugin reference pages, generated from the plugins' own schemas.
docs: build
	$(BIN)/upshift plugins docs --bin $(BIN) --out docs/plugins/reference

proto:
	./plugins/proto/generate.sh

fmt:
	gofmt -w $$(git ls-files '*.go')
	$(BIN)/upshift fmt --recursive --skip-invalid playbooks

clean:
	rm -rf $(BIN)
