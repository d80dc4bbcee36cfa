# orderpipe — `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
PKGS  := ./...

.PHONY: help up down status demo test test-unit build fuzz lint clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/worker and bin/orderctl
	$(GO) build -o bin/ ./cmd/worker ./cmd/orderctl

up: ## start the local stack (PgBouncer, SNS/SQS emulator, Mailpit; PostgreSQL and Redis if down)
	scripts/stack.sh up

down: ## stop what `make up` started
	scripts/stack.sh down

status: ## show which services of the local stack are up
	scripts/stack.sh status

demo: build ## bring everything up, run 200 orders through the pipeline, print the report
	scripts/demo.sh

test: build up ## unit and integration tests (with -race) against the local stack
	eval "$$(scripts/stack.sh env)" && $(GO) test -race -count=1 -timeout 10m $(PKGS)

test-unit: ## unit tests only (no services needed)
	$(GO) test -short -count=1 $(PKGS)

fuzz: ## fuzz the event decoder for 30s
	$(GO) test ./events -run '^$$' -fuzz FuzzDecode -fuzztime 30s

clean: ## remove build outputs (keeps .stack/)
	rm -rf bin
