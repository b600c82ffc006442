# The README's two commands (make serve, make test) and the setup they share.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: serve test install system

$(BIN)/buildhook: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/buildhook

system:
	scripts/system-setup

# The web app and a worker on embedded defaults: SQLite in .buildhook/, a private Redis.
serve: system install
	$(BIN)/buildhook serve $(ARGS)

# The whole suite, against a real Docker Engine, registry, Redis and git repositories.
test: system install
	$(BIN)/python -m pytest $(ARGS)
