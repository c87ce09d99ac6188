# Satlas: `make run` starts it, `make test` checks it. Both set up what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQS := requirements/runtime.txt requirements/train.txt requirements/dev.txt requirements/constraints.txt
SITE = $(VENV)/lib/python3.11/site-packages

.PHONY: setup system-deps run up triton test proto models train convert evaluate bench bench-triton bench-store lock clean

setup: $(STAMP)

$(STAMP): $(REQS) web/package-lock.json
	@bash scripts/system_deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/constraints.txt \
		-r requirements/runtime.txt -r requirements/train.txt -r requirements/dev.txt
	# gen/python holds the generated satlas.v1 package; the repository root holds the services.
	printf '%s\n' "$(CURDIR)/gen/python" "$(CURDIR)" > $(SITE)/satlas_paths.pth
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

system-deps:
	bash scripts/system_deps.sh

# The whole stack in the foreground: Triton, Valkey, the three services, a worker, Flower.
# DATABASE_URL / REDIS_URL / TRITON_URL point it at servers of your own. Ctrl-C stops it all.
up: setup
	$(PY) -m satkit.stack

# `make up`, fed by the data simulator (its flags: SIMULATOR_ARGS="--interval 0.2 --max-batch 10").
run: setup
	$(PY) -m satkit.stack --simulator

triton: setup
	$(PY) -m satkit.triton_local

# Contracts: lint, then regenerate gen/python and gen/ts (committed; tests fail when stale).
proto: setup
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf generate --template buf.gen.python.yaml
	$(VENV)/bin/buf generate --template buf.gen.ts.yaml

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# Retrain both models and redeploy them into model_repository/ (a few minutes on 2 cores).
models: train convert

train: setup
	$(PY) -m scripts.train --model all

convert: setup
	bash scripts/convert_example.sh

evaluate: setup
	$(PY) -m scripts.evaluate --json bench-results/quality.json

# End to end on an isolated stack: offered-load sweep, then 60 s at 300 jobs/s (DATABASE_URL honoured).
bench: setup
	$(PY) -m scripts.bench_mesh --json bench-results/mesh.json

bench-triton: setup
	$(PY) -m scripts.bench_triton --json bench-results/triton.json

bench-store: setup
	$(PY) -m scripts.bench_store

lock: setup
	(echo '# Every package of the environment, pinned (pip freeze). Regenerate with `make lock` after changing requirements/*.txt.'; \
	 $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//') > requirements/constraints.txt

clean:
	rm -rf .run bench-results .pytest_cache
