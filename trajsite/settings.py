"""Settings for trajsite, read from the environment with safe local defaults.

Every variable is documented in README.md ("Configuration").
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TRAJSITE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _local_secret_key() -> str:
    # Generated once and kept beside the local data, so sessions survive restarts
    # without a secret ever being committed.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY") or _local_secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# Served over HTTPS (behind a proxy that sets X-Forwarded-Proto): secure cookies, redirects, HSTS.
# `manage.py check --deploy` is clean with it on. The probes answer over plain HTTP for load balancers.
TRAJSITE_HTTPS = env_bool("TRAJSITE_HTTPS", False)
if TRAJSITE_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    # Both on by default (check --deploy asks for them); a domain with plain-HTTP subdomains turns them off.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "trajectories",
]

MIDDLEWARE = [
    # Outermost: its total covers everything below (Server-Timing, the slow-request log).
    "trajsite.middleware.ServerTimingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files from the app itself, so gunicorn serves pages with their CSS and scripts.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # One cache generation and one table-version check per request (trajectories.cache.read_scope).
    "trajsite.middleware.ReadScopeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "trajsite.middleware.ContentSecurityPolicyMiddleware",
    "trajsite.middleware.StoreBusyMiddleware",
]

# Sessions read from the cache (Redis), written through to the database: no query per request.
# trajsite.sessions adds the data cache's outage memory (a frozen Redis must not slow every page).
SESSION_ENGINE = "trajsite.sessions"
SESSION_CACHE_ALIAS = "sessions"
ROOT_URLCONF = "trajsite.urls"
WSGI_APPLICATION = "trajsite.wsgi.application"
ASGI_APPLICATION = "trajsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "trajectories.context_processors.admin_chrome",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'trajsite.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web workers read (sessions' users, tokens, jobs) while import workers write progress: in WAL mode
    # readers never wait for a writer, writers take the lock when their transaction begins (no
    # deadlocked upgrade), and a writer waits its turn instead of failing with "database is locked"
    # (seen under load with the default rollback journal: 500s on plain list requests).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE", "timeout": 30}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Under pytest the defaults are a database and key prefix of their own: the machine's Redis is shared.
TESTING = "pytest" in sys.modules
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15" if TESTING else "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "trajsite-test" if TESTING else "trajsite"),
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": 0.25,
            "SOCKET_TIMEOUT": 0.5,
            "CONNECTION_POOL_KWARGS": {"max_connections": 64},
            # trajectories/cache.py handles failures itself: pages work uncached, one warning per outage.
            "IGNORE_EXCEPTIONS": False,
        },
    },
    # Sessions read through Redis but live in the database: with Redis down they are read from there.
    # Failures surface to trajsite.sessions, which remembers the outage like trajectories/cache.py.
    "sessions": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "trajsite-test" if TESTING else "trajsite") + "-sessions",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.5, "IGNORE_EXCEPTIONS": False},
    },
}

# Where trajectories live: a local directory or an object-store URI (s3://bucket/prefix, gs://, az://).
TRAJSITE_DATA_DIR = os.environ.get("TRAJSITE_DATA_DIR", str(VAR_DIR / "lancedb"))
# Rows per LanceDB write during imports: large batches keep fragments few and pages fast.
TRAJSITE_IMPORT_BATCH_SIZE = env_int("TRAJSITE_IMPORT_BATCH_SIZE", 5000)
# What an import reads into memory at once: one JSONL line, one .json document (bytes, uncompressed).
TRAJSITE_IMPORT_MAX_LINE_BYTES = env_int("TRAJSITE_IMPORT_MAX_LINE_BYTES", 256 * 1024 * 1024)
TRAJSITE_IMPORT_MAX_DOCUMENT_BYTES = env_int("TRAJSITE_IMPORT_MAX_DOCUMENT_BYTES", 256 * 1024 * 1024)
# ...and the most JSON values a line or document may hold (parsed, each is a Python object).
TRAJSITE_IMPORT_MAX_JSON_VALUES = env_int("TRAJSITE_IMPORT_MAX_JSON_VALUES", 2_000_000)
# Processes that parse and validate a large import (one per core); below the size, the importing
# process does it alone (starting workers costs about a second).
TRAJSITE_IMPORT_WORKERS = env_int("TRAJSITE_IMPORT_WORKERS", os.cpu_count() or 1)
TRAJSITE_IMPORT_PARALLEL_BYTES = env_int("TRAJSITE_IMPORT_PARALLEL_BYTES", 32 * 1024 * 1024)
# CPU priority (nice) of an import and its workers: on a shared machine people's pages go first.
TRAJSITE_IMPORT_NICE = env_int("TRAJSITE_IMPORT_NICE", 10)
# Off: every read goes to the store (benchmarks of the uncached path; debugging).
TRAJSITE_CACHE = env_bool("TRAJSITE_CACHE", True)
# How stale a read may be when no cache generation says data changed (0: check LanceDB every request).
# Unset: 0 on a local disk (a check costs ~1 ms), 1 s on object storage (a check is requests, ~15-30 ms).
_VERSION_CHECK = os.environ.get("TRAJSITE_VERSION_CHECK_SECONDS")
TRAJSITE_VERSION_CHECK_SECONDS = float(_VERSION_CHECK) if _VERSION_CHECK else None
# A projection of this many rows or more is rebuilt in the background after an import, the previous one
# answering meanwhile; a smaller one is rebuilt by the request that finds it out of date.
TRAJSITE_BACKGROUND_BUILD_ROWS = env_int("TRAJSITE_BACKGROUND_BUILD_ROWS", 100_000)
# Projections of this many rows or more are written once into TRAJSITE_PROJECTION_DIR (a local disk of
# this machine) and mapped by every process: one copy in the page cache, one build per new version.
# An empty TRAJSITE_PROJECTION_DIR turns it off (each process holds and builds its own).
TRAJSITE_PROJECTION_DIR = os.environ.get("TRAJSITE_PROJECTION_DIR", str(VAR_DIR / "projections"))
TRAJSITE_SHARED_PROJECTION_ROWS = env_int("TRAJSITE_SHARED_PROJECTION_ROWS", 100_000)
# A store of more trajectories than this is not projected whole: each process holds the projections of
# the training runs asked about, at most this many rows of them, and answers lists across runs from
# LanceDB's scalar indexes (trajectories/store/runs.py). 0: no budget (one projection of every row).
TRAJSITE_PROJECTION_BUDGET_ROWS = env_int("TRAJSITE_PROJECTION_BUDGET_ROWS", 0)
# A new version's shared projection is written by a process of its own (`manage.py build_projection`,
# started by the web worker that finds the version), not on a thread that shares a worker's interpreter
# lock with its requests. Off: the worker's background thread builds it, as before.
TRAJSITE_BUILD_PROCESS = env_bool("TRAJSITE_BUILD_PROCESS", True)
# Bounds of LanceDB's caches in each process: index pages (the text index is ~240 MB at 1M rows) and
# table metadata (every version read leaves its manifest there; unbounded, a heap grows as people edit).
TRAJSITE_LANCE_INDEX_CACHE_MB = env_int("TRAJSITE_LANCE_INDEX_CACHE_MB", 512)
TRAJSITE_LANCE_METADATA_CACHE_MB = env_int("TRAJSITE_LANCE_METADATA_CACHE_MB", 32)
# Largest file the import page accepts (the command line has no limit).
TRAJSITE_UPLOAD_MAX_BYTES = env_int("TRAJSITE_UPLOAD_MAX_BYTES", 1024**3)
FILE_UPLOAD_TEMP_DIR = None
# A bulk action on more rows than this first answers with the count and a token to confirm it with.
TRAJSITE_BULK_CONFIRM_ROWS = env_int("TRAJSITE_BULK_CONFIRM_ROWS", 100)
# Versions younger than this are never pruned, so running readers keep a valid snapshot.
TRAJSITE_KEEP_VERSIONS_MINUTES = env_int("TRAJSITE_KEEP_VERSIONS_MINUTES", 60)
# Requests slower than this are logged as a structured `slow_request` line.
TRAJSITE_SLOW_REQUEST_MS = env_int("TRAJSITE_SLOW_REQUEST_MS", 500)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "admin:login"
AUTHENTICATION_BACKENDS = ["trajectories.auth.CachedModelBackend"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "trajectories.auth.CachedTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_PARSER_CLASSES": ["trajectories.api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "trajectories.api.renderers.FastJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "trajectories.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "trajsite API",
    "DESCRIPTION": "Trajectories of RL agent training: list, filter, annotate, curate.",
    "VERSION": "1",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAdminUser"],
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Served by WhiteNoise: from STATIC_ROOT after `collectstatic` (compressed, cached for a year by
# name); without it, straight from the apps' static folders, so `make run` and gunicorn look alike.
WHITENOISE_USE_FINDERS = True
# collectstatic fills it; made here so that a site never collected does not warn on every start.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
    "loggers": {
        "trajectories": {"level": os.environ.get("LOG_LEVEL", "INFO")},
        # Structured lines (imports' ends, slow requests): `trajectories.events`.
        "trajsite": {"level": os.environ.get("LOG_LEVEL", "INFO")},
    },
}
