# The README's two commands (make serve, make test) and the setup they share.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: serve test test-postgres install system dist smoke image-check

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

# The same suite against PostgreSQL: a private server the tests start and stop (BUILDHOOK_TEST_POSTGRES=1),
# from Debian's postgresql, installed when missing.
test-postgres: system install
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  echo "installing postgresql" && apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; } || \
	  { echo "please install postgresql (apt-get install postgresql)" >&2; exit 1; }
	BUILDHOOK_TEST_POSTGRES=1 $(BIN)/python -m pytest $(ARGS)

# The sdist and the wheel, in dist/.
dist: install
	rm -rf dist
	$(BIN)/pip install -q build
	$(BIN)/python -m build --outdir dist .

# The wheel as users install it: a fresh venv outside the checkout, no extras, `pip check`, then
# scripts/smoke_test.py from an empty directory (serve, /healthz, /login, a push, an image, a deploy).
smoke: dist system
	rm -rf "$${TMPDIR:-/tmp}/buildhook-smoke-venv"
	$(PYTHON) -m venv "$${TMPDIR:-/tmp}/buildhook-smoke-venv"
	"$${TMPDIR:-/tmp}/buildhook-smoke-venv/bin/pip" install -q dist/buildhook-*.whl
	"$${TMPDIR:-/tmp}/buildhook-smoke-venv/bin/pip" check
	cd "$${TMPDIR:-/tmp}" && $(PYTHON) $(CURDIR)/scripts/smoke_test.py --buildhook "$${TMPDIR:-/tmp}/buildhook-smoke-venv/bin/buildhook"

# Builds the Dockerfile (on a local Debian Python base: no image can be pulled here) and checks the
# image: healthy by its HEALTHCHECK, unprivileged, the wheel installed, /login with its assets.
image-check: system
	scripts/image-check
