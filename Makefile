# Set-up is two commands on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH_PIN := torch==2.13.0
DATA_ROOT ?= ../shared/data

.PHONY: install quickstart test test-fast bench-foundation clean browser

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

test: install browser
	RECEMBED_DATA_ROOT=$${RECEMBED_DATA_ROOT:-$(DATA_ROOT)} $(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs .pytest_cache
