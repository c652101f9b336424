# Set-up is two commands on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH_PIN := torch==2.13.0
DATA_ROOT ?= ../shared/data

.PHONY: install quickstart test test-fast bench-foundation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, pinned: it is a CPU build installed from local disk; anything later that
# accepts torch>=2.2 then keeps it instead of pulling a CUDA build.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e ".[train,test,content]"
	touch $@

install: $(VENV)/.installed

quickstart: install
	$(BIN)/recembed fit ease --data synthetic --out runs/quickstart
	$(BIN)/recembed recommend runs/quickstart --user u0 --k 10

test: install
	RECEMBED_DATA_ROOT=$${RECEMBED_DATA_ROOT:-$(DATA_ROOT)} $(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs .pytest_cache
