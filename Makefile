# Two entry points for a fresh machine (see README.md): `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup toolchain test demo clean

$(BIN)/mlops-drill: pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/mlops-drill

toolchain: setup
	$(BIN)/mlops-drill toolchain build

test: toolchain
	$(BIN)/python -m pytest

demo: toolchain
	$(BIN)/mlops-drill demo gpu-missing-toleration

clean:
	-$(BIN)/mlops-drill cluster down
