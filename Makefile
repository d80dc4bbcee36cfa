# orderpipe — `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
PKGS  := ./...
# VERSION, when set, is stamped into the binaries (`--version`); unset, they
# print the module version and VCS revision Go records.
VERSION ?=
# golangci-lint is pinned here and installed from the Go module proxy into
# .stack/bin (git-ignored) on first use, and again when this pin changes.
GOLANGCI_LINT_VERSION := v2.15.0
STATE_DIR     := $(or $(ORDERPIPE_STATE_DIR),$(CURDIR)/.stack)
GOLANGCI_LINT := $(STATE_DIR)/bin/golangci-lint

.PHONY: help up down status demo test test-unit build lambda fuzz lint clean drill bench bench-ledger soak bench-go

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/worker, bin/orderctl (shipped) and bin/orderbench (bench, loadgen, drill; not shipped)
	$(GO) build -ldflags="-X main.version=$(VERSION)" -o bin/ ./cmd/worker ./cmd/orderctl ./cmd/orderbench

lambda: ## build the AWS Lambda function (provided.al2023, x86_64): bin/lambda/bootstrap and bin/lambda/bootstrap.zip, functions.yaml's CodeS3Key
	mkdir -p bin/lambda
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -tags lambda.norpc -trimpath -ldflags="-s -w -X main.version=$(VERSION)" -o bin/lambda/bootstrap ./cmd/lambda
	cd bin/lambda && rm -f bootstrap.zip && python3 -c 'import zipfile; z = zipfile.ZipFile("bootstrap.zip", "w", zipfile.ZIP_DEFLATED); i = zipfile.ZipInfo("bootstrap"); i.external_attr = 0o755 << 16; z.writestr(i, open("bootstrap", "rb").read(), zipfile.ZIP_DEFLATED)'

up: ## start the local stack (PgBouncer, SNS/SQS emulator, Mailpit, moto; PostgreSQL and Redis if down)
	scripts/stack.sh up

down: ## stop what `make up` started
	scripts/stack.sh down

status: ## show which services of the local stack are up
	scripts/stack.sh status

demo: build ## bring everything up, run 200 orders through the pipeline, print the report
	scripts/demo.sh

# -p 3: the three slow packages (internal/app, internal/drill,
# internal/lambdaharness) mostly wait on queues and timers, so they run side
# by side even on two cores (4m53s with the default -p 2 on two cores, 3m02s
# with -p 3, 2026-11-29). The timeout is over twice the slowest package
# (internal/app, 139-153 s).
test: build up ## unit and integration tests (with -race) against the local stack
	eval "$$(scripts/stack.sh env)" && $(GO) test -race -count=1 -p 3 -timeout 10m $(PKGS)

test-unit: ## unit tests only (no services needed)
	$(GO) test -short -count=1 $(PKGS)

drill: build up ## failover drill under load (~9 min): promotion, restarts, outages, and the network's faults (hangs, latency, resets, AWS errors) through toxiproxy
	eval "$$(scripts/stack.sh env)" && bin/orderbench drill

# NETWORK is the benchmark's network profiles: loopback (the local stack as
# it is) and cloud (toxiproxy latency as in one AWS region), in that order.
NETWORK ?= loopback,cloud

bench: build up ## benchmark (~14 min): max rate, the Lambda shape, ceiling, minimal replay, naive, latency, runtime on loopback, with the cost per order; max, ceiling, naive under cloud latency (NETWORK=cloud for that alone); tables in .stack/bench/
	eval "$$(scripts/stack.sh env)" && bin/orderbench bench --network $(NETWORK)

bench-ledger: build up ## max and ceiling with the ledger empty, then pre-filled with LEDGER_DAYS (365) days at 100,000 orders a day (a year: 20-40 min to generate here); .stack/bench/ledger/
	eval "$$(scripts/stack.sh env)" && bin/orderbench bench --phases ledger --ledger-days $${LEDGER_DAYS:-365} --profile never --out .stack/bench/ledger

soak: build up ## worker memory at half the max rate for BENCH_SOAK (10m), after a max run; results in .stack/bench/soak/
	eval "$$(scripts/stack.sh env)" && bin/orderbench bench --phases max,soak --soak $${BENCH_SOAK:-10m} --profile never --out .stack/bench/soak

bench-go: ## Go benchmarks of the per-message hot path (decode, validate, fingerprint, pricing), with allocations
	$(GO) test -run '^$$' -bench . -benchmem ./events ./handlers/...

lint: ## golangci-lint with .golangci.yml (the pinned version, installed into .stack/bin on first use)
	@if [ ! -x "$(GOLANGCI_LINT)" ] || [ "$$(cat "$(GOLANGCI_LINT).version" 2>/dev/null)" != "$(GOLANGCI_LINT_VERSION)" ]; then \
	  echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) with go install" >&2; \
	  mkdir -p "$(STATE_DIR)/bin" && \
	  GOBIN="$(STATE_DIR)/bin" $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) && \
	  echo "$(GOLANGCI_LINT_VERSION)" >"$(GOLANGCI_LINT).version"; \
	fi
	$(GOLANGCI_LINT) run $(PKGS)

fuzz: ## fuzz the event decoder for 30s
	$(GO) test ./events -run '^$$' -fuzz FuzzDecode -fuzztime 30s

clean: ## remove build outputs (keeps .stack/)
	rm -rf bin

# --- deployment (deploy/cloudformation) -------------------------------------
STACK  ?= orderpipe
BUCKET ?=
PARAMS ?=

.PHONY: deploy-files deploy-aws

deploy-files: ## render deploy/ecs/*.json and topology/topology.json from the CloudFormation templates
	$(GO) generate ./deploy

deploy-aws: ## deploy the stack to AWS: make deploy-aws BUCKET=templates-bucket PARAMS="ImageTag=v1 VpcId=vpc-... Subnets=subnet-a,subnet-b SMTPSecretArn=arn:..." [STACK=orderpipe]
	@test -n "$(BUCKET)" || { echo "make deploy-aws: BUCKET= names the S3 bucket the nested templates are uploaded to" >&2; exit 2; }
	@mkdir -p .stack
	aws cloudformation package --template-file deploy/cloudformation/orderpipe.yaml \
	  --s3-bucket $(BUCKET) --s3-prefix $(STACK) --output-template-file .stack/$(STACK).packaged.yaml
	aws cloudformation deploy --template-file .stack/$(STACK).packaged.yaml --stack-name $(STACK) \
	  --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset $(if $(PARAMS),--parameter-overrides $(PARAMS))
	aws cloudformation describe-stacks --stack-name $(STACK) --query 'Stacks[0].Outputs' --output table
