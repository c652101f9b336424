# Set-up is two commands on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH_PIN := torch==2.13.0
DATA_ROOT ?= ../shared/data

.PHONY: install install-torchrec quickstart test test-fast bench-foundation clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, pinned: it is a CPU build installed from local disk; anything later that
# accepts torch>=2.2 then keeps it instead of pulling a CUDA build.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e ".[train,test,content,serve,store]"
	touch $@

install: $(VENV)/.installed

# TorchRec for `--shard` (docs/scale.md; tests/test_torchrec.py), pinned to what loads with $(TORCH_PIN) on a CPU:
# fbgemm-gpu-cpu 1.8.0 + torchrec 1.8.0 with --no-deps (torchrec requires `fbgemm-gpu`, the CUDA build, whose plain
# install pulls a CUDA torch and ~20 NVIDIA wheels; fbgemm-gpu-cpu 1.9.0 does not load with torch 2.13.0). Then
# torchrec's other requirements, pinned so that none asks for a newer torch: torchmetrics==1.0.3 (torchrec's own
# pin), tensordict==0.15.3 (needs torch>=2.11), and the pure-Python ones through the recembed[torchrec] extra.
# A failed download only warns (tests/test_torchrec.py then skips and says why); a changed torch is an error.
TORCHREC_PINS := fbgemm-gpu-cpu==1.8.0 torchrec==1.8.0
TORCHREC_DEPS := tensordict==0.15.3 torchmetrics==1.0.3
$(VENV)/.torchrec: $(VENV)/.installed
	@($(BIN)/pip install -q --no-deps $(TORCHREC_PINS) && $(BIN)/pip install -q $(TORCHREC_DEPS) -e ".[torchrec]") \
	  || echo "warning: could not install TorchRec ($(TORCHREC_PINS)); tests/test_torchrec.py will skip"
	$(BIN)/python -c "import torch, sys; v = torch.__version__.split('+')[0]; \
	  sys.exit(0 if '$(TORCH_PIN)'.endswith(v) else f'torch changed to {v}: reinstall $(TORCH_PIN)')"
	touch $@

install-torchrec: $(VENV)/.torchrec

quickstart: install
	$(BIN)/recembed fit alpharec --data examples/interactions.csv --items examples/items.csv \
	    --columns user=reader,item=book,time=date,rating=stars \
	    --text-columns title,description --encoder tfidf --no-progress --out runs/quickstart
	$(BIN)/recembed recommend runs/quickstart --user ana --k 5

# Headless Chromium (Debian's package) and playwright-core (npm, into the git-ignored .browser/) for the
# page and API-docs tests (tests/test_serve_page.py, tests/test_serve_docs_page.py). No browser download:
# playwright drives /usr/bin/chromium. A failed install only warns; those tests then skip and say why.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium (apt-get); the browser test will skip"; fi
	@if [ ! -f .browser/node_modules/playwright-core/package.json ]; then \
	  (mkdir -p .browser && npm install --no-save --no-audit --no-fund --prefix .browser playwright-core@1 >/dev/null) \
	  || echo "warning: could not install playwright-core (npm); the browser test will skip"; fi

test: install install-torchrec browser
	RECEMBED_DATA_ROOT=$${RECEMBED_DATA_ROOT:-$(DATA_ROOT)} $(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs .pytest_cache
