# Quick start: `make demo` (train, export, verify and serve the VAE) and `make test` (the test suite).
# Both create .venv from requirements.txt when it is missing or older than requirements.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
TFA_VENV := .venv-tf-agents
RUN := runs/vae-demo
MODELS := models
GRPC_PORT ?= 8500
REST_PORT ?= 8501
CHROMIUM := /usr/bin/chromium

.PHONY: demo playground test venv tf-agents-venv bench-venv clean

venv: $(VENV)/.installed

# uv installs what requirements.txt pins and byte-compiles it on every core, so that imports never compile (with
# PYTHONDONTWRITEBYTECODE set they would, in every process). On this 2-core machine: pip 100 s with its cache
# warm, uv 46 s with its cache cold and 35 s warm.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(UV) pip install --quiet --python $(PY) --compile-bytecode -r requirements.txt
	touch $@

# tf-agents for the compatibility tests: --no-deps on top of .venv (requirements-tf-agents.txt)
tf-agents-venv: $(TFA_VENV)/.installed

$(TFA_VENV)/.installed: requirements-tf-agents.txt $(VENV)/.installed
	test -x $(TFA_VENV)/bin/python || $(PYTHON) -m venv $(TFA_VENV)
	$(PY) -c 'import site; print(site.getsitepackages()[0])' > \
	  "$$($(TFA_VENV)/bin/python -c 'import site; print(site.getsitepackages()[0])')/main-venv.pth"
	@# a .venv made before this Makefile used uv has none
	test -x $(UV) || $(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(UV) pip install --quiet --python $(TFA_VENV)/bin/python --no-deps --compile-bytecode -r requirements-tf-agents.txt
	touch $@

# the benchmarks' reference implementations: tf-agents, SB3 with torch 2.13.0 (CPU, from this machine's disk), rejax (JAX)
bench-venv: tf-agents-venv
	$(TFA_VENV)/bin/python -m pip install --quiet -r benchmarks/requirements.txt
	$(TFA_VENV)/bin/python -m pip install --quiet --no-deps -r benchmarks/requirements-nodeps.txt
	$(TFA_VENV)/bin/python -m pip install --quiet --no-deps --upgrade --target $(TFA_VENV)/tfp-nightly \
	  tfp-nightly==0.26.0.dev20261027

demo: venv
	$(PY) -m training vae --preset demo --out $(RUN)
	$(PY) -m export $(RUN) --model_base_path $(MODELS) --name vae
	$(PY) -m export verify $(MODELS)/vae
	@# serve the exports as TensorFlow Serving would, ask for 16 samples over gRPC, stop the server
	$(PY) -m serving serve --model_config_file=$(CURDIR)/$(MODELS)/models.config \
	    --port=$(GRPC_PORT) --rest_api_port=$(REST_PORT) > $(RUN)/server.log 2>&1 & server=$$!; \
	  trap 'kill $$server 2>/dev/null; wait $$server' EXIT; \
	  $(PY) -m serving query --server=127.0.0.1:$(GRPC_PORT) status --model=vae --wait=120 && \
	  $(PY) -m serving query --server=127.0.0.1:$(GRPC_PORT) sample --model=vae -n 16 --seed=0 \
	    --out=$(RUN)/served-samples.png
	@echo
	@echo "pictures:     $(RUN)/samples.png reconstructions.png latent.png learning_curves.png"
	@echo "metrics:      $(RUN)/metrics.json   TensorBoard: $(VENV)/bin/tensorboard --logdir $(RUN)/tensorboard"
	@echo "export:       $(MODELS)/vae/<version>   server config: $(MODELS)/models.config"
	@echo "served:       $(RUN)/served-samples.png (sampled over gRPC; server log $(RUN)/server.log)"

# $(call trained,NAME,RUN,TRAINING ARGUMENTS): train RUN and export it as MODELS/NAME, unless MODELS/NAME exists
trained = test -d $(MODELS)/$(1) || { $(PY) -m training $(3) --out $(2) && \
  $(PY) -m export $(2) --model_base_path $(MODELS) --name $(1); }
PLAYGROUND_URL := http://127.0.0.1:$(REST_PORT)/playground/?models=vae,pixelcnn,cartpole,acrobot

# The playground page (docs/playground.md): trains and exports what it shows the first time (make demo's VAE
# is reused), then serves it with the page until Ctrl-C.
playground: venv
	$(call trained,vae,$(RUN),vae --preset demo)
	$(call trained,pixelcnn,runs/pixelcnn-playground,pixelcnn --preset demo --epochs=2)
	$(call trained,cartpole,runs/a2c-cartpole,a2c --preset cartpole)
	$(call trained,acrobot,runs/a2c-acrobot,a2c --preset acrobot)
	@$(PY) -m serving serve --model_config_file=$(CURDIR)/$(MODELS)/models.config --port=$(GRPC_PORT) \
	    --rest_api_port=$(REST_PORT) --playground & server=$$!; \
	  trap 'kill $$server 2>/dev/null; wait $$server' EXIT; \
	  $(PY) -m serving query --server=127.0.0.1:$(GRPC_PORT) status --model=acrobot --wait=120 > /dev/null && \
	  echo && echo "playground: $(PLAYGROUND_URL)   (Ctrl-C stops the server)" && echo && wait $$server

# the playground's browser tests drive Debian's Chromium through Playwright (which downloads no browser);
# installed as root when missing
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test:
	@# the environments and the browser side by side (uv compiling while apt unpacks)
	$(MAKE) --no-print-directory -j 2 venv tf-agents-venv $(CHROMIUM)
	$(PY) -m pytest -n 2 --dist loadgroup

clean:
	rm -rf runs $(MODELS)
