# Quick start: `make demo` (train, export, verify the VAE) and `make test` (the test suite).
# Both create .venv from requirements.txt when it is missing or older than requirements.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
RUN := runs/vae-demo
MODELS := models

.PHONY: demo test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

demo: venv
	$(PY) -m training vae --preset demo --out $(RUN)
	$(PY) -m export $(RUN) --model_base_path $(MODELS) --name vae
	$(PY) -m export verify $(MODELS)/vae
	@echo
	@echo "pictures:     $(RUN)/samples.png reconstructions.png latent.png learning_curves.png"
	@echo "metrics:      $(RUN)/metrics.json   TensorBoard: $(VENV)/bin/tensorboard --logdir $(RUN)/tensorboard"
	@echo "export:       $(MODELS)/vae/<version>   server config: $(MODELS)/models.config"

test: venv
	$(PY) -m pytest

clean:
	rm -rf runs $(MODELS)
