# Set-up and checks for awconv. `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-all lint demo clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[train,detect,dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -m "not slow" -q -n 2

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

# The README's demo (docs/demo.md): six ResNet-20 variants x 2 seeds on MNIST 5k, ~12-16 min on 2 CPU cores.
# One thread per process: on shared cores, more threads spin against each other.
DEMO_MODELS := resnet20_cifar seresnet20_cifar cbamresnet20_cifar aw_resnet20_cifar aw_seresnet20_cifar aw_cbamresnet20_cifar
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m awconv compare --data mnist5k --image-size 16 --models $(DEMO_MODELS) \
		--seeds 0 1 --epochs 2 --batch-size 64 --optimizer sgd --lr 0.1 --weight-decay 5e-4 \
		--schedule cosine --warmup-epochs 0.3 --workers 0 --accelerator cpu --out runs/demo

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis
