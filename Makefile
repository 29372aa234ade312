# modelport — the front door. Every target calls a Python entry point; the only logic here is setup.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The interpreter: PYTHON=, else the first of PYTHONS that runs (a pyenv shim of a version not installed exists but
# fails), else python3, which the venv recipe then turns down with the reason. Each version in PYTHONS has its own
# lock, requirements-py3XX.lock (`make lock`); docs/dependencies.md says why 3.10 and 3.13 have none.
PYTHONS := 3.11 3.12
WHY_NOT_3.10 := keras 3.15, onnxruntime 1.32, scikit-learn 1.9 and pillow 13 need 3.11 or newer
WHY_NOT_3.13 := numpy 1.x, which the python backend stub of the bundled Triton 2.51 needs, has no wheel for it
ifndef PYTHON
PYTHON := $(or $(firstword $(foreach v,$(PYTHONS),$(shell python$(v) -c '' >/dev/null 2>&1 && echo python$(v)))),python3)
endif
# An existing venv keeps its own Python.
PYTHON_VERSION := $(shell $(or $(wildcard $(PY)),$(PYTHON)) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
LOCK := requirements-py$(subst .,,$(PYTHON_VERSION)).lock
NO_LOCK = $(if $(PYTHON_VERSION),$(PYTHON) is Python $(PYTHON_VERSION): $(or $(WHY_NOT_$(PYTHON_VERSION)),there is no lock for it),$(PYTHON) does not run)

# Ports and addresses for `make serve` / `make start`; override on the command line (make serve HTTP_PORT=9000).
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
SERVE_FLAGS ?=
LOADTEST_FLAGS ?=
BENCH_FLAGS ?=
TUNE_FLAGS ?=
TEST_FLAGS ?=
# The supervisor's heal/restart counters for Prometheus (serve/metrics.py), beside Triton's own metrics port.
SUPERVISOR_METRICS_PORT ?= 8003
SERVE_ARGS = --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT) \
	--supervisor-metrics-port $(SUPERVISOR_METRICS_PORT) $(SERVE_FLAGS)
# The gateway (`make gateway`, and `make start` beside Triton) on 127.0.0.1:$(GATEWAY_PORT), calling Triton's gRPC port.
GATEWAY_PORT ?= 8080
# its /metrics for Prometheus, open on its own loopback bind (the API port's needs a key for every model)
GATEWAY_METRICS_PORT ?= 8004
GATEWAY_FLAGS ?=
GATEWAY_ARGS = --port $(GATEWAY_PORT) --metrics-port $(GATEWAY_METRICS_PORT) --triton 127.0.0.1:$(GRPC_PORT) $(GATEWAY_FLAGS)

IMAGE ?= modelport-triton:latest

.PHONY: help venv lock system export trt serve gateway start stop status test loadtest bench tune docker-build docker-run clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): $(wildcard $(LOCK)) client/pyproject.toml
	@test -f $(LOCK) || { echo 'modelport: $(NO_LOCK); it runs on Python $(firstword $(PYTHONS))-$(lastword $(PYTHONS)): install one, or set PYTHON=/path/to/python$(firstword $(PYTHONS))'; exit 2; }
	@test -x $(PY) || { echo 'modelport: creating $(VENV) with $(PYTHON) (Python $(PYTHON_VERSION))'; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e ./client
	@touch $@

# Optional extras, `make venv EXTRAS=torch`: requirements-NAME-py3XX.lock only adds packages, installed with the base
# lock as constraints so no base pin moves (docs/export.md, "PyTorch and Hugging Face models").
EXTRAS ?=
EXTRA_LOCK = requirements-$(1)-py$(subst .,,$(PYTHON_VERSION)).lock
EXTRAS_HERE = $(patsubst $(call EXTRA_LOCK,%),%,$(wildcard $(call EXTRA_LOCK,*)))
$(VENV)/.installed-%: $(call EXTRA_LOCK,%) $(STAMP)
	$(PY) -m pip install --quiet -r $< -c $(LOCK)
	@touch $@
$(VENV)/.installed-%:
	@echo 'modelport: no extra $* for Python $(PYTHON_VERSION) (no $(call EXTRA_LOCK,$*)); extras: $(EXTRAS_HERE)'; exit 2

venv: $(foreach e,$(EXTRAS),$(VENV)/.installed-$(e)) $(STAMP) ## create .venv with the pinned dependencies (EXTRAS=torch adds one)

LOCK_FLAGS ?=
lock: $(STAMP) ## re-resolve requirements.txt into a lock per supported Python (LOCK_FLAGS=--upgrade moves pins)
	$(PY) -m env.locks lock $(LOCK_FLAGS)

export: $(STAMP) ## train/load the models in models.toml, convert, verify, write model_repository/ (and deploy/)
	$(PY) -m export
	$(PY) -m operate generate

trt: $(STAMP) ## build TensorRT plans (needs a GPU and TensorRT: run inside the NGC container)
	$(PY) -m export.trt

serve: $(STAMP) ## run Triton in the foreground on 127.0.0.1 (Ctrl-C stops it)
	$(PY) -m serve run $(SERVE_ARGS)

gateway: $(STAMP) ## run the gateway (JSON API, web page) in the foreground on 127.0.0.1:8080, in front of Triton
	$(PY) -m gateway run $(GATEWAY_ARGS)

start: $(STAMP) ## start Triton and the gateway in the background and wait until every model is ready
	$(PY) -m serve start $(SERVE_ARGS)
	$(PY) -m gateway start $(GATEWAY_ARGS)

stop: $(STAMP) ## stop the gateway and the server `make start` started
	$(PY) -m gateway stop
	$(PY) -m serve stop

status: $(STAMP) ## say whether the background server is up, and its models
	$(PY) -m serve status

system: $(STAMP) ## install the Debian packages the tests need when missing (prometheus, chromium, chromium-driver)
	$(PY) -m env.system

test: $(STAMP) system export ## install what the tests need, export, run the suite (unit + integration, real Triton)
	$(PY) -m pytest $(TEST_FLAGS)

loadtest: $(STAMP) ## bounded headless Locust run against the running server, with SLO gates and a report
	$(PY) -m loadtest $(LOADTEST_FLAGS)

bench: $(STAMP) ## Triton vs Flask vs FastAPI vs in-process ONNX Runtime, one run, ratios
	$(PY) -m bench $(if $(MODEL),--model $(MODEL)) $(BENCH_FLAGS)

tune: $(STAMP) ## measure serving configs here (5 min) and write the best into models.toml; then `make export`
	$(PY) -m tune $(if $(MODEL),--model $(MODEL)) $(TUNE_FLAGS)

docker-build: ## build the GPU image from triton.Dockerfile (needs Docker)
	docker build -f triton.Dockerfile -t $(IMAGE) .

docker-run: ## run the GPU image with all GPUs (needs Docker and the NVIDIA container toolkit)
	docker run --rm --gpus all -p 127.0.0.1:$(HTTP_PORT):8000 -p 127.0.0.1:$(GRPC_PORT):8001 -p 127.0.0.1:$(METRICS_PORT):8002 \
		-e MODELPORT_ADMIN_KEY $(IMAGE)

.PHONY: deploy monitor
PROMETHEUS_PORT ?= 9090
deploy: $(STAMP) ## write deploy/ from models.toml: Prometheus config + alert rules, Grafana dashboard, Kubernetes + KServe
	$(PY) -m operate generate

monitor: $(STAMP) ## run Prometheus on 127.0.0.1:9090 scraping the running Triton, supervisor and gateway (apt-get install prometheus)
	$(PY) -m operate monitor --listen 127.0.0.1:$(PROMETHEUS_PORT) --triton 127.0.0.1:$(METRICS_PORT) \
		--supervisor 127.0.0.1:$(SUPERVISOR_METRICS_PORT) $(if $(GATEWAY_METRICS_PORT),--gateway 127.0.0.1:$(GATEWAY_METRICS_PORT))

clean: ## remove generated artifacts (keeps .venv and the trained-model cache)
	$(PY) -m export --clean
