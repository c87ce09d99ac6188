# Satlas: `make run` starts it, `make test` checks it. Both set up what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQS := requirements/runtime.txt requirements/train.txt requirements/dev.txt requirements/constraints.txt
SITE = $(VENV)/lib/python3.11/site-packages

.PHONY: setup system-deps web web-test run up token secrets demo triton test proto models train convert evaluate bench bench-triton bench-store bench-door bench-observe overload soak lock clean

setup: $(STAMP)

$(STAMP): $(REQS) web/package.json web/package-lock.json
	@bash scripts/system_deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/constraints.txt \
		-r requirements/runtime.txt -r requirements/train.txt -r requirements/dev.txt
	# gen/python holds the generated satlas.v1 package; the repository root holds the services.
	printf '%s\n' "$(CURDIR)/gen/python" "$(CURDIR)" > $(SITE)/satlas_paths.pth
	# npm install, not npm ci: the registry mirror lacks the other platforms' rollup/esbuild builds, so
	# npm ci rejects any lock it can write; with the lock in sync, npm install keeps it byte for byte.
	cd web && npm install --no-audit --no-fund --loglevel=error
	touch $(STAMP)

system-deps:
	bash scripts/system_deps.sh

# The dashboard's static files (web/dist), served behind Envoy; rebuilt when its sources change.
WEB_SOURCES := $(shell find web/src web/public gen/ts -type f) web/index.html web/dashboard.html web/vite.config.ts web/tsconfig.json
web: web/dist/index.html

web/dist/index.html: $(STAMP) $(WEB_SOURCES)
	cd web && npm run --silent build -- --logLevel warn

# Type check and the component tests (Vitest, jsdom).
web-test: setup
	cd web && npm run --silent typecheck && npm test --silent

# The whole stack in the foreground: Triton, Valkey, the three services, the dashboard behind Envoy,
# a worker, Flower.
# DATABASE_URL / REDIS_URL / TRITON_URL point it at servers of your own. Ctrl-C stops it all.
# TLS=1: a local CA and a certificate for localhost under .run/tls/, and TLS only at the front door.
TLS ?= 0
up: setup web
	SATLAS_TLS=$(TLS) $(PY) -m launcher

# `make up`, fed by the data simulator (its flags: SIMULATOR_ARGS="--interval 0.2 --max-batch 10").
run: setup web
	SATLAS_TLS=$(TLS) $(PY) -m launcher --simulator

# What compose's Envoy mounts: the signing keys (.run/auth/) and a CA and certificate (.run/tls/)
# for localhost and NAMES="satlas.example.com 10.0.0.5" (the names clients reach it by).
NAMES ?=
secrets: setup
	$(PY) -m launcher.auth keys
	$(PY) -m launcher.tls $(foreach n,$(NAMES),--name $(n))

# A new token for the front door: SCOPES=read (or submit, cancel, admin, any comma-separated mix), TTL=1h.
SCOPES ?= submit,read,cancel
TTL ?= 1h
token: setup
	@$(PY) -m launcher.auth token --scopes "$(SCOPES)" --ttl "$(TTL)"

# A guided tour of a running stack (`make up` in another terminal); DEMO_ARGS="--pause 3" to slow it down.
demo: setup
	$(PY) -m tools.demo $(DEMO_ARGS)

triton: setup
	$(PY) -m launcher.triton_local

# Contracts: lint, then regenerate gen/python and gen/ts (committed; tests fail when stale).
proto: setup
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf generate --template buf.gen.python.yaml
	$(VENV)/bin/buf generate --template buf.gen.ts.yaml

# Component tests first, then pytest: services, mesh, Envoy and the browser tests in Chromium.
test: setup web web-test
	$(PY) -m pytest $(PYTEST_ARGS)

# Retrain both models and redeploy them into model_repository/ (a few minutes on 2 cores).
models: train convert

train: setup
	$(PY) -m scripts.train --model all

convert: setup
	bash scripts/convert_example.sh

evaluate: setup
	$(PY) -m scripts.evaluate --json bench-results/quality.json --plot bench-results/quality.png

# End to end on an isolated stack: offered-load sweep, 60 s at 1,200 jobs/s, then Triton alone and the
# mesh's efficiency; JSON and PNG in bench-results/ (DATABASE_URL honoured).
bench: setup
	$(PY) -m tools.bench.mesh --json bench-results/mesh.json

bench-triton: setup
	$(PY) -m tools.bench.triton --json bench-results/triton.json

bench-store: setup
	$(PY) -m tools.bench.store

# What the front door costs: the same load straight, through Envoy open, with tokens, with tokens and TLS.
bench-door: setup
	$(PY) -m tools.bench.door --json bench-results/door.json

# What metrics and traces cost: sustained throughput before them, with tracing off, on, and sampled.
bench-observe: setup
	$(PY) -m tools.bench.observe --json bench-results/observe.json

# Three times the mesh's measured maximum for 60 s: refused in time, memory bounded, nothing lost.
overload: setup
	$(PY) -m tools.bench.overload --json bench-results/overload.json

# Chaos soak: 1 hour at 100 jobs/s while every part is killed in turn every 3 minutes, then the check
# that nothing was lost or doubled; SOAK_ARGS="--database postgresql" (or "--duration 0 --every 15").
soak: setup
	$(PY) -m tools.soak $(SOAK_ARGS)

lock: setup
	(echo '# Every package of the environment, pinned (pip freeze). Regenerate with `make lock` after changing requirements/*.txt.'; \
	 $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//') > requirements/constraints.txt

clean:
	rm -rf .run bench-results .pytest_cache
