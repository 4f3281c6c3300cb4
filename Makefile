# Set-up and checks for awconv. `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: install test test-wheel test-all lint mutation data demo demo-detect clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[train,detect,dev]"
	touch $(STAMP)

# The compiled CPU kernel (impl="cpp", src/awconv/ops/csrc): built for this machine's CPU and this
# torch, about 20 s; without it the library runs its pure-PyTorch kernels (awconv/ops/cpu_extension.py).
CPU_KERNEL := $(VENV)/.cpu-kernel
$(CPU_KERNEL): $(STAMP) src/awconv/ops/csrc/aw_conv2d_cpu.cpp
	$(PY) -c 'from awconv.ops.cpu_extension import main; main()'
	touch $@

install: $(STAMP) $(CPU_KERNEL)

# Two test workers with one thread each: on 2 cores, more threads spin against each other. The
# branch-coverage report lists the uncovered lines of src/ ([tool.coverage] in pyproject.toml);
# commands the tests run in a subprocess are not traced.
test: $(CPU_KERNEL)
	$(PY) -m ruff check src tests benchmarks
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow" -q -n 2 --cov --cov-report=term-missing

# Mutation testing (mutmut, [tool.mutmut] in pyproject.toml): each mutant of the operator, layers,
# convert, data loaders, checkpoints and schedules is run against the fast tests that reach it.
# About an hour on 2 cores (docs/reliability.md); MUTANTS picks some, e.g. MUTANTS='awconv.engine.optim.*'.
# Results stay in mutants/ (`mutmut results`, `mutmut show NAME`); a rerun tests only what changed.
# TRITON_INTERPRET=1 runs the Triton kernels' tests on the CPU in the test process, where mutmut sees them.
MUTANTS ?=
mutation: $(CPU_KERNEL)
	env -u PYTHONPATH OMP_NUM_THREADS=1 TRITON_INTERPRET=1 $(VENV)/bin/mutmut run --max-children 2 $(MUTANTS)
	$(PY) benchmarks/mutation_table.py

# The package as a user gets it: the sdist and the wheel built from it (python -m build), the wheel
# installed (not editable) into its own virtual environment beside $(VENV), and tests/wheel_smoke.py
# run from an empty directory. The environment keeps only $(TORCH) between runs (the rest is
# uninstalled first, so each run starts from a fresh environment with torch); it is rebuilt when
# this file changes. The base wheel is checked without extras: the library, then the command line.
WHEEL_VENV ?= .venv-wheel
WPY := $(abspath $(WHEEL_VENV))/bin/python
WHEEL_STAMP := $(WHEEL_VENV)/torch-only.txt
SMOKE = d=$$(mktemp -d) && cd $$d && OMP_NUM_THREADS=1 $(WPY) -P $(CURDIR)/tests/wheel_smoke.py $(1); \
	s=$$?; rm -rf $$d; exit $$s

$(WHEEL_STAMP): Makefile
	rm -rf $(WHEEL_VENV)
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WPY) -m pip install -q --upgrade pip
	$(WPY) -m pip install -q --no-compile $(TORCH)
	$(WPY) -m pip list --format=freeze > $@

test-wheel: $(STAMP) $(WHEEL_STAMP)
	rm -rf dist
	$(PY) -m build -q --outdir dist .
	$(WPY) -m pip list --format=freeze | grep -vxFf $(WHEEL_STAMP) | xargs -r $(WPY) -m pip uninstall -q -y
	$(WPY) -m pip install -q --no-compile dist/awconv-*.whl
	$(call SMOKE,library)
	$(call SMOKE,cli)

test-all: $(CPU_KERNEL)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

# Fashion-MNIST (issue 17) from Debian's dataset-fashion-mnist package: apt-get as root; otherwise
# apt-get download + dpkg -x into $(DATA_CACHE), which `--data fashion-mnist` also searches.
FASHION_MNIST := usr/share/datasets/fashion-mnist
SYSTEM_DATA ?= /
DATA_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/awconv
AS_ROOT ?= $(shell [ "$$(id -u)" = 0 ] && echo yes)
data:
	@for dir in $(SYSTEM_DATA)$(FASHION_MNIST) $(DATA_CACHE)/$(FASHION_MNIST); do \
		[ -f $$dir/t10k-labels-idx1-ubyte.gz ] && { echo "Fashion-MNIST is in $$dir"; exit 0; }; \
	done; \
	if [ "$(AS_ROOT)" = yes ]; then \
		apt-get install -y dataset-fashion-mnist || { apt-get update && apt-get install -y dataset-fashion-mnist; }; \
	else \
		tmp=$$(mktemp -d) && (cd $$tmp && apt-get download dataset-fashion-mnist) && mkdir -p $(DATA_CACHE) && \
		dpkg -x $$tmp/dataset-fashion-mnist_*.deb $(DATA_CACHE) && rm -rf $$tmp && \
		echo "Fashion-MNIST is in $(DATA_CACHE)/$(FASHION_MNIST)"; \
	fi

# The README's demo: six ResNet-20 variants x 2 seeds on MNIST 5k, about 10 min on 2 CPU cores.
# One thread per process: on shared cores, more threads spin against each other.
DEMO_MODELS := resnet20_cifar seresnet20_cifar cbamresnet20_cifar aw_resnet20_cifar aw_seresnet20_cifar aw_cbamresnet20_cifar
demo: $(CPU_KERNEL)
	OMP_NUM_THREADS=1 $(PY) -m awconv compare --data mnist5k --image-size 16 --models $(DEMO_MODELS) \
		--seeds 0 1 --epochs 2 --batch-size 64 --optimizer sgd --lr 0.1 --weight-decay 5e-4 \
		--schedule cosine --warmup-epochs 0.3 --workers 0 --accelerator cpu --out runs/demo

clean:
	rm -rf $(VENV) $(WHEEL_VENV) build dist .pytest_cache .hypothesis

# Detection demo: plain vs AW ResNet-18-FPN Faster R-CNN on a synthetic shapes set, on CPU, both runs
# side by side with one thread each; prints both mAP tables and writes runs/demo-detect/report/.
DET_DEMO := runs/demo-detect
DET_ARGS := --min-size 96 --max-size 96 --epochs 5 --milestones 4 --batch-size 4 --lr 0.02 --warmup-iters 20 \
	--workers 0 --accelerator cpu --no-progress --detector-arg box_batch_size_per_image=64 \
	--detector-arg rpn_pre_nms_top_n_train=600 --detector-arg rpn_post_nms_top_n_train=300 \
	--detector-arg rpn_pre_nms_top_n_test=300 --detector-arg rpn_post_nms_top_n_test=100 \
	--data coco:$(DET_DEMO)/shapes/train,$(DET_DEMO)/shapes/annotations/instances_train.json \
	--val-data coco:$(DET_DEMO)/shapes/val,$(DET_DEMO)/shapes/annotations/instances_val.json
demo-detect: $(CPU_KERNEL)
	rm -rf $(DET_DEMO)
	$(PY) -m awconv make-shapes $(DET_DEMO)/shapes --images 160 --size 96 --seed 0
	OMP_NUM_THREADS=1 $(PY) -m awconv detect train --model fasterrcnn_resnet18_fpn $(DET_ARGS) \
		--out $(DET_DEMO)/plain > $(DET_DEMO)/plain.log 2>&1 & plain=$$!; \
	OMP_NUM_THREADS=1 $(PY) -m awconv detect train --model fasterrcnn_aw_resnet18_fpn $(DET_ARGS) \
		--out $(DET_DEMO)/aw > $(DET_DEMO)/aw.log 2>&1 & aw=$$!; \
	wait $$plain; status=$$?; wait $$aw && exit $$status
	tail -n 4 $(DET_DEMO)/plain.log $(DET_DEMO)/aw.log
	$(PY) -m awconv detect report $(DET_DEMO)/plain $(DET_DEMO)/aw --images 6 --out $(DET_DEMO)/report \
		--data coco:$(DET_DEMO)/shapes/val,$(DET_DEMO)/shapes/annotations/instances_val.json
