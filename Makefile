# zerocontact developer commands. `make up` runs the suite on the embedded engines,
# `make test` runs lint, unit and integration tests; both set up a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
ENGINES := $(PY) deploy/local/engines.py
DIST := dist
STAMP := $(VENV)/.installed
# Prometheus's rule checker, built with Prometheus by `make fetch` (or `make promtool`).
PROMTOOL := $(or $(ZC_LOCAL_HOME),.cache)/bin/promtool
ALERT_RULES := deploy/monitoring/alerts.yaml
ALERT_TESTS := deploy/monitoring/alerts.test.yaml

.PHONY: help venv lock proto contracts fetch promtool up down status lint lint-deploy asyncapi image-sizes test test-unit test-integration bench chaos chaos-quick buf-lint buf-breaking clients clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

MEMBERS := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml clients/python/pyproject.toml)

$(STAMP): pyproject.toml uv.lock $(MEMBERS)
	@command -v $(PYTHON_BOOT) >/dev/null || { echo "error: $(PYTHON_BOOT) not found: install Python 3.11+"; exit 1; }
	@[ -x $(PY) ] || $(PYTHON_BOOT) -m venv $(VENV)
	@[ -x $(UV) ] || $(VENV)/bin/pip install -q uv==0.13.9
	$(UV) sync -q --frozen --python $(PY)
	@touch $(STAMP)

venv: $(STAMP) ## create .venv from uv.lock: every workspace member (editable) and the dev tools

lock: ## re-resolve uv.lock from the workspace's pyproject files
	$(UV) lock

node_modules/.bin/buf: package.json package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found: install Node.js 20+ (buf comes from the npm registry)"; exit 1; }
	npm ci --no-audit --no-fund --silent
	@touch $@

proto: $(STAMP) node_modules/.bin/buf ## generate protobuf/gRPC modules and .pyi stubs into libs/contracts (zerocontact-contracts)
	$(PY) proto/generate.py

asyncapi: $(STAMP) proto ## regenerate docs/asyncapi.yaml and docs/asyncapi.html from proto/topics.toml and the protos
	$(PY) deploy/tools/asyncapi.py

# The contracts as an artifact for teams outside the workspace: the wheel (Python modules and
# .pyi stubs) and a FileDescriptorSet with imports and comments, for any language or tool
# (protoc --descriptor_set_in, grpcurl -protoset). Both carry the version events name in
# ce_dataschema (docs/contracts.md).
contracts: proto ## build dist/: the zerocontact-contracts wheel and its descriptor set (.binpb)
	@version=$$($(PY) -c 'import tomllib; print(tomllib.load(open("libs/contracts/pyproject.toml", "rb"))["project"]["version"])') && \
	rm -f $(DIST)/zerocontact_contracts-$$version-*.whl $(DIST)/zerocontact-contracts-$$version.binpb && \
	$(UV) build -q --package zerocontact-contracts --wheel -o $(DIST)/ && \
	node_modules/.bin/buf build --as-file-descriptor-set -o $(DIST)/zerocontact-contracts-$$version.binpb && \
	ls -1 $(DIST)/zerocontact_contracts-$$version-*.whl $(DIST)/zerocontact-contracts-$$version.binpb

buf-lint: node_modules/.bin/buf ## buf lint (STANDARD)
	node_modules/.bin/buf lint

# The partner clients (docs/clients.md): Go, Java and TypeScript generated from proto/ by buf
# (buf.gen.{go,java,ts}.yaml, local plugins) into git-ignored folders and built, each skipped
# while its inputs are unchanged. `bash clients/build.sh go` (or java, ts) builds one.
clients: $(STAMP) node_modules/.bin/buf ## generate and build the Go, Java and TypeScript partner clients and their journeys
	bash clients/build.sh

buf-breaking: node_modules/.bin/buf ## buf breaking against the previous commit of main
	bash .ci/buf-breaking

fetch: $(STAMP) ## fetch the Kafka broker jars (Maven), build FerretDB, Jaeger and Prometheus (Go) into .cache/
	$(ENGINES) fetch

promtool: $(STAMP) ## build Prometheus and promtool into .cache/bin if missing (part of `make fetch`)
	@[ -x $(PROMTOOL) ] || $(ENGINES) fetch

up: $(STAMP) proto ## start Kafka, FerretDB, Jaeger, Prometheus and every service under supervisord; wait until healthy
	$(ENGINES) up

down: ## stop everything `make up` started
	@[ -x $(PY) ] && $(ENGINES) down || true

# The demo partner `make up` registers (deploy/local/services.toml): its credential and the
# paths of its certificates, for the examples (docs/gateway.md, "Quick start").
DEMO_PARTNER := $(or $(ZC_LOCAL_HOME),.cache)/run/demo-partner.json
.PHONY: demo
demo: $(STAMP) ## the 310 and payroll journeys through the gateway of the running suite (make up), with their timelines
	@[ -f $(DEMO_PARTNER) ] || { echo "error: $(DEMO_PARTNER) not found: start the suite with make up"; exit 1; }
	@echo "== 310 loan: apply, approve, accept, disburse =="
	$(PY) examples/partner_310.py --credential-file $(DEMO_PARTNER)
	@echo "== payroll: employer, wallet, batch of five salaries, approval, paid =="
	$(PY) examples/partner_payroll.py --credential-file $(DEMO_PARTNER)

status: $(STAMP) ## show what is running
	$(ENGINES) status

lint-deploy: $(STAMP) ## validate deploy/, docker-compose.yml and the Dockerfile offline (kustomize, k8s schemas, kube-score, compose, BuildKit lint)
	bash deploy/tools/install.sh
	bash deploy/tools/lint.sh

image-sizes: $(STAMP) proto ## the installed size of each service image's venv, without Docker (docs/deployment.md)
	bash deploy/tools/image-sizes.sh

lint: $(STAMP) proto buf-lint lint-deploy ## ruff, mypy, import contracts, buf lint, the AsyncAPI document and the deployment validators
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	MYPYPATH=deploy/local:bench $(VENV)/bin/mypy deploy/local/engines.py deploy/local/localsuite \
		proto/generate.py deploy/tools/*.py bench examples/consumer_loan_events.py
	$(PY) deploy/tools/asyncapi.py --check  # docs/asyncapi.{yaml,html} match the catalog and protos
	$(PY) deploy/tools/prometheus_rule.py --check  # the monitoring component's PrometheusRule and dashboards match deploy/monitoring
	node deploy/tools/asyncapi-validate.mjs docs/asyncapi.yaml  # the official AsyncAPI parser
	$(VENV)/bin/lint-imports --no-cache  # the architecture contracts in pyproject.toml [tool.importlinter]
	@if [ -f $(ALERT_RULES) ]; then $(MAKE) -s promtool && set -x && $(PROMTOOL) check rules $(ALERT_RULES); fi
	@if [ -f $(ALERT_TESTS) ]; then $(MAKE) -s promtool && set -x && $(PROMTOOL) test rules $(ALERT_TESTS); fi

test-unit: $(STAMP) proto
	$(PY) -m pytest tests/unit -q

test-integration: $(STAMP) proto fetch
	$(PY) -m pytest tests/integration -q

test: lint fetch ## lint, unit and integration tests (starts the embedded engines when needed)
	$(PY) -m pytest tests/unit tests/integration -q -p no:cacheprovider

bench: $(STAMP) proto fetch ## benchmarks under bench/ (engines started if needed)
	$(PY) bench/run.py

chaos: $(STAMP) proto fetch ## the reliability and security scenarios of tests/chaos/, full size, and their table (docs/reliability.md)
	$(PY) bench/chaos.py

# The CI subset (.ci/run): the --quick scenarios of the money paths that fit in about ten
# minutes on a 2-core machine (docs/reliability.md, "The CI subset"); `make chaos` runs them
# all, `bench/chaos.py --quick` every one at its smaller size.
CHAOS_QUICK := kill9,outbox_crash,replay,poison
chaos-quick: $(STAMP) proto fetch ## the CI subset of the scenarios, smaller: kill9, outbox_crash, replay, poison (docs/reliability.md)
	$(PY) bench/chaos.py --quick --only $(CHAOS_QUICK)

clean: down ## remove generated code and caches (keeps the engine cache)
	rm -rf libs/contracts/src/zerocontact/*/v1 .pytest_cache .mypy_cache .ruff_cache
	rm -rf clients/go/gen clients/java/gen clients/java/target clients/ts/src/gen clients/ts/dist .cache/clients/*.stamp
