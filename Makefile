# Two entry points for a fresh machine (see README.md): `make demo` and `make test`.
# Each step says what it does in one line; pip and setuptools stay quiet unless something fails.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check -q
# setuptools tells every editable install to beware of same-named folders in the working
# directory; setup.py maps the parts under `mlops_drill`, so the notice has nothing to act on.
QUIET_BUILD := PYTHONWARNINGS="ignore:Editable installation"

.PHONY: setup sandbox-tools toolchain test demo clean

$(BIN)/mlops-drill: pyproject.toml setup.py
	@echo "setup: Python environment in $(VENV) with mlops-drill and its test tools (first time: a few minutes)"
	@$(PY) -m venv $(VENV)
	@$(PIP) install --upgrade pip
	@$(QUIET_BUILD) $(PIP) install -e '.[test]'
	@touch $@
	@echo "setup: done"

setup: $(BIN)/mlops-drill

# Pods of the embedded cluster run in bubblewrap sandboxes (nsenter/setpriv from util-linux enter
# them); iptables closes the engine's ports to pods. Installed from Debian's packages when missing.
sandbox-tools:
	@if ! command -v bwrap >/dev/null || ! command -v iptables >/dev/null || ! command -v nsenter >/dev/null; then \
	  echo "sandbox-tools: installing bubblewrap, iptables and util-linux (apt-get)"; \
	  { apt-get install -y -q bubblewrap iptables util-linux >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap iptables util-linux >/dev/null 2>&1; }; } \
	  || { echo "sandbox-tools: could not install them; as root: apt-get install bubblewrap iptables util-linux" >&2; exit 1; }; \
	fi

toolchain: setup sandbox-tools
	@if $(BIN)/mlops-drill toolchain status | grep -q ' missing '; then \
	  echo "toolchain: building the cluster binaries from Go modules into ~/.cache/mlops-drill (first time only)"; \
	  $(BIN)/mlops-drill toolchain build; \
	else echo "toolchain: ready (\`$(BIN)/mlops-drill toolchain status\` lists the binaries)"; fi

test: toolchain
	@echo "test: the whole suite on an embedded cluster"
	@$(BIN)/python -m pytest

demo: toolchain
	@echo "demo: one scenario end to end (cluster, fault, the reference solution typed as a candidate, grade)"
	@$(BIN)/mlops-drill demo gpu-missing-toleration

clean:
	-@$(BIN)/mlops-drill cluster down
