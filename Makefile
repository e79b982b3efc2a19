# One-command entry points. Each target creates .venv from the lock file on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCK := requirements-lock.txt
WORKDIR ?= workdirs

.PHONY: install demo demo-dkt demo-fdp demo-stem test lint clean

# The pinned versions of requirements-lock.txt, then the project itself without resolving again.
$(STAMP): pyproject.toml $(LOCK)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded synthetic data.
demo: demo-fdp

demo-fdp: $(STAMP)
	$(BIN)/python -m launch.fdp --config=launch/configs/fdp_demo.py --workdir=$(WORKDIR)/fdp_demo

demo-dkt: $(STAMP)
	$(BIN)/python -m launch.dkt --config=launch/configs/dkt_simulated5.py --workdir=$(WORKDIR)/dkt_simulated5

demo-stem: $(STAMP)
	$(BIN)/python -m launch.stem --config=launch/configs/stem_synthetic.py --workdir=$(WORKDIR)/stem_synthetic

# The whole test suite (what CI runs): ruff first (its config in pyproject.toml bans the upward imports), then pytest.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(WORKDIR) .pytest_cache .cache
