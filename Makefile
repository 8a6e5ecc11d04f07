# The two commands of README.md: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run serve test lint format bench venv clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-distributed.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: venv
	$(BIN)/python manage.py migrate --no-input -v0
	$(BIN)/python manage.py ensure_staff
	$(BIN)/python manage.py load_demo --if-empty
	@echo "trajsite on http://127.0.0.1:8000/ (log in with the staff login above); uploads run in the import worker"
	$(BIN)/python manage.py import_worker & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(BIN)/python manage.py runserver --insecure 127.0.0.1:8000

# Production-style on one machine: gunicorn (trajsite/gunicorn.conf.py) and an import worker. More
# machines run the same two commands against one database, one Redis and one object store (README).
serve: venv
	$(BIN)/python manage.py migrate --no-input -v0
	$(BIN)/python manage.py collectstatic --no-input -v0
	$(BIN)/python manage.py check --deploy
	$(BIN)/python manage.py import_worker & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(BIN)/gunicorn -c trajsite/gunicorn.conf.py trajsite.wsgi

test: venv
	scripts/ensure_chromium.sh
	REDIS_URL=$$(scripts/ensure_redis.sh) CACHE_KEY_PREFIX=trajsite-test $(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN)/ruff check .

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv
	$(BIN)/python benchmarks/import_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
