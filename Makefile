# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
GO    ?= go
PKGS  := ./...
FUZZTIME ?= 30s

.PHONY: run test unit integration lint build fuzz bench fetch scale clean

## run: start PostgreSQL, Keycloak (demo realm) and the service in the foreground
run:
	deploy/local/run.sh

## test: lint, then every unit and integration test against real Keycloak and PostgreSQL
test: lint
	deploy/local/deps.sh
	deploy/local/stack.sh exec -- $(GO) test -count=1 -timeout 45m $(PKGS)

## unit: fast tests only (no servers)
unit:
	$(GO) test -short -count=1 -race $(PKGS)

## integration: integration tests only
integration:
	deploy/local/deps.sh
	deploy/local/stack.sh exec -- $(GO) test -count=1 -timeout 45m ./test/...

## lint: gofmt and go vet
lint:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [[ -n "$$out" ]]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## build: the service binary in bin/
build:
	$(GO) build -o bin/communities ./cmd/communities

## fuzz: run each fuzz target for FUZZTIME (default 30s)
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

## bench: benchmarks of the pure packages
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/... ./internal/...

## scale: the national-scale benchmark (not part of test): SCALE_N communities
## (default 10000), a user in SCALE_M (default 100); prints one table
scale:
	deploy/local/deps.sh
	SCALE_N=$${SCALE_N:-10000} deploy/local/stack.sh exec -- $(GO) test -count=1 -timeout 0 -v -run '^TestScale$$' ./test/scale/

## fetch: download and build Keycloak into the cache without starting it
fetch:
	deploy/local/keycloak.sh fetch

clean:
	rm -rf bin
