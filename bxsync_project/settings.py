"""One env-driven settings file: every knob is an environment variable (docs/configuration.md)."""

from datetime import timedelta
from pathlib import Path

import environ
from django.utils.translation import gettext_lazy as _

from bxsync_project.secret_key import DEVELOPMENT_KEY

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# The web server, the workers and `make run` refuse to start without a real SECRET_KEY unless DEBUG
# (bxsync_project/secret_key.py); tests and one-off commands get an obviously-insecure development key.
SECRET_KEY = env("SECRET_KEY", default=DEVELOPMENT_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "bxsync_project.apps.BxsyncAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # naturaltime ("5 minutes ago") for the admin, with its translations.
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    # django-q2 and django-axes under names a manager reads in the admin (bxsync_project/apps.py).
    "bxsync_project.apps.BackgroundTasksConfig",
    "bxsync_project.apps.LoginProtectionConfig",
    "statussync",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "bxsync_project.query_guard.NulInQueryMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The reader's language: the switcher's cookie, else the browser's Accept-Language, else LANGUAGE_CODE.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "bxsync_project.urls"
WSGI_APPLICATION = "bxsync_project.wsgi.application"

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
            ]
        },
    }
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'bxsync.sqlite3'}")}
# The web server's processes keep their connection between requests: opening one (and, on SQLite, running
# the PRAGMAs below) cost an eighth of a webhook's time in the intake profile (docs/benchmarks.md). Only
# there (`manage.py serve` marks them): django-q2 forks its workers, and a connection kept open across a
# fork would be shared by two processes. No CONN_HEALTH_CHECKS: its `SELECT 1` before each request was a
# second round trip per webhook; bxsync_project/wsgi.py checks the connection for every other request, and
# a webhook's one statement is retried on a new connection if the database dropped the old one
# (statussync/upsert.py).
if env("BXSYNC_PROCESS", default="") == "web":
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("BXSYNC_WEB_DB_CONN_MAX_AGE", default=300)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and workers share one SQLite file. WAL lets readers run beside the one writer; IMMEDIATE takes the
    # write lock at BEGIN so a read-then-write transaction waits instead of failing at once with
    # "database is locked" (https://blog.pecar.me/django-sqlite-dblock; healthchecks ships the same default).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
    test_name = env("BXSYNC_TEST_DB", default="")
    if test_name:
        # End-to-end tests share a file test database with subprocesses (an in-memory one is per process).
        DATABASES["default"]["TEST"] = {"NAME": test_name}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Webhook intake touches the cache (the wake-up flag): an unreachable Redis must fail fast, so
            # the stored event still gets its 200, rather than hang the request.
            "OPTIONS": {"socket_connect_timeout": 5, "socket_timeout": 5},
        }
    }
else:
    # A shared cache is needed across web and worker processes (wake-up flags, django-q2 stats); the
    # database cache is the embedded choice. LocMemCache would be per process and silently wrong.
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "bxsync_cache"}
    }

# The default language and time zone of the admin and the commands (the demo runs in Russian, Moscow time).
LANGUAGE_CODE = env("LANGUAGE_CODE", default="en-us")
TIME_ZONE = env("TIME_ZONE", default="UTC")
LANGUAGES = [("en", _("English")), ("ru", _("Russian"))]
# Compiled catalogs are committed beside their .po files (docs/decisions.md "Translations").
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the apps' static folders too, so a forgotten collectstatic still shows a styled admin.
WHITENOISE_USE_FINDERS = True

# Webhook bodies are small (a handful of form fields); anything big is not Bitrix.
BXSYNC_MAX_EVENT_BYTES = env.int("BXSYNC_MAX_EVENT_BYTES", default=64 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

# Each API view names its own parsers, authentication and permissions (statussync/api/apis.py).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "statussync.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "bxsync",
    "DESCRIPTION": "Bitrix outgoing-webhook intake and health of bxsync (see README.md).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The application token travels in the event body, which no OpenAPI security scheme describes; the
    # schema states it as a required body field (statussync/api/schema.py).
    "AUTHENTICATION_WHITELIST": [],
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
}

# --- Security for a public deployment (README "Security") ---
# Trust the TLS proxy's X-Forwarded-Proto (and X-Forwarded-For, for the login throttle) only when told: with
# no proxy in front that overwrites them, any client could send them and pass for HTTPS or another address.
BXSYNC_BEHIND_PROXY = env.bool("BXSYNC_BEHIND_PROXY", default=False)
BXSYNC_PROXY_COUNT = env.int("BXSYNC_PROXY_COUNT", default=1)
if BXSYNC_BEHIND_PROXY:
    _ssl_header = env("BXSYNC_PROXY_SSL_HEADER", default="X-Forwarded-Proto")
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _ssl_header.upper().replace("-", "_"), "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Never redirect the webhooks or the health checks: Bitrix does not follow a redirect and never re-sends the
# event, and a redirect cannot protect a token the request has already carried in the clear.
SECURE_REDIRECT_EXEMPT = [r"^api/bitrix/", r"^api/health/"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Browsers honour HSTS only from an HTTPS answer, so plain-HTTP trials are not affected.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = []
if not SECURE_SSL_REDIRECT:
    # The TLS proxy in front redirects HTTP to HTTPS by default (docs/decisions.md).
    SILENCED_SYSTEM_CHECKS.append("security.W008")
if not SECURE_HSTS_PRELOAD:
    # Preloading is a decision for the owner of the whole domain, not for one service on it.
    SILENCED_SYSTEM_CHECKS.append("security.W021")

# Admin login guessing: django-axes locks a username from one address after a few failures, for a while.
# By username and address together, so a stranger cannot lock a manager out from elsewhere.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("BXSYNC_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("BXSYNC_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "bxsync_project.proxy.client_ip"

# --- bxsync: the portals (public contract, see README) ---
BXSYNC_CMS_REST_URL = env("BXSYNC_CMS_REST_URL", default="")
BXSYNC_CMS_APP_TOKEN = env("BXSYNC_CMS_APP_TOKEN", default="")
BXSYNC_CRM_REST_URL = env("BXSYNC_CRM_REST_URL", default="")
BXSYNC_CRM_APP_TOKEN = env("BXSYNC_CRM_APP_TOKEN", default="")
BXSYNC_DEAL_ORDER_FIELD = env("BXSYNC_DEAL_ORDER_FIELD", default="UF_CRM_ORDER_ID")

# --- bxsync: tuning (documented in docs/configuration.md) ---
# Bitrix cloud cuts a request off after 60 s (settings/performance/limits.md): a longer timeout waits for
# nothing (statussync/checks.py says so); a shorter one keeps a write round within its lease.
BXSYNC_REST_TIMEOUT = env.float("BXSYNC_REST_TIMEOUT", default=20.0)
# The operating-time limit of one method per webhook over 10 minutes (480 s is the documented example; the
# cloud's value is Bitrix's to set): past BXSYNC_OPERATING_SLOW_DOWN of it bxsync holds that method until its
# oldest minute leaves the count (statussync/bitrix/operating.py).
BXSYNC_OPERATING_LIMIT_SECONDS = env.float("BXSYNC_OPERATING_LIMIT_SECONDS", default=480.0)
BXSYNC_OPERATING_SLOW_DOWN = env.float("BXSYNC_OPERATING_SLOW_DOWN", default=0.9)
# How often the pull process reads the offline queue of a portal connected as an application in pull mode
# (statussync/intake_pull.py): a payment waits at most this long; one request a second per portal is half
# of Bitrix's 2 a second, paced by the shared limiter like every other call [docs/bitrix.md "Limits"].
BXSYNC_PULL_SECONDS = env.float("BXSYNC_PULL_SECONDS", default=1.0)
# Bitrix cloud leaky bucket: 2 requests/s drain, 50 burst (Enterprise: 5/s, 250).
BXSYNC_RATE_PER_SECOND = env.float("BXSYNC_RATE_PER_SECOND", default=2.0)
BXSYNC_RATE_BURST = env.int("BXSYNC_RATE_BURST", default=50)
BXSYNC_RATE_MAX_WAIT = env.float("BXSYNC_RATE_MAX_WAIT", default=30.0)
# The part of a portal's bucket (rate and burst) bxsync uses: the portal's other applications share it
# (settings/performance/limits.md), so 0.8 leaves them 10 of 50 and 0.4 requests a second.
BXSYNC_RATE_SHARE = env.float("BXSYNC_RATE_SHARE", default=0.8)
# Slots of the burst that only payment work may use, so a saturating bulk edit never delays a payment.
BXSYNC_RATE_PRIORITY_RESERVE = env.int("BXSYNC_RATE_PRIORITY_RESERVE", default=10)
# A run reads with list commands of 50 ids, 50 commands to a batch call: 2,500 jobs cost one read request
# per portal, and their writes a call per 50 (statussync/sync/plan.py;
# docs/decisions.md "Runs grow while a stream goes on").
BXSYNC_JOB_BATCH = env.int("BXSYNC_JOB_BATCH", default=2500)
# Attempts before a job failing for a reason of its own (a database error, a bug) is a dead letter. A portal
# that is busy or down is waited out instead, for up to BXSYNC_JOB_GIVE_UP_HOURS.
BXSYNC_JOB_MAX_ATTEMPTS = env.int("BXSYNC_JOB_MAX_ATTEMPTS", default=8)
BXSYNC_JOB_GIVE_UP_HOURS = env.float("BXSYNC_JOB_GIVE_UP_HOURS", default=24.0)
# A claim (a run's jobs and order locks, a background operation) is held this long past the last heartbeat of
# its holder, which renews it every 5 s while it is alive (statussync/leases.py): the work of a process that
# died is taken over this long after its death. At least three heartbeats (system check bxsync.W001).
BXSYNC_JOB_LEASE_SECONDS = env.int("BXSYNC_JOB_LEASE_SECONDS", default=20)
# A worker task stops claiming new runs after this long and hands over to a fresh task, so a backlog of
# 10,000 jobs never meets django-q2's task timeout.
BXSYNC_WORKER_TASK_SECONDS = env.int("BXSYNC_WORKER_TASK_SECONDS", default=120)
BXSYNC_RETRY_BASE_SECONDS = env.float("BXSYNC_RETRY_BASE_SECONDS", default=2.0)
BXSYNC_RETRY_MAX_SECONDS = env.float("BXSYNC_RETRY_MAX_SECONDS", default=600.0)
BXSYNC_CONFLICT_TOLERANCE_SECONDS = env.float("BXSYNC_CONFLICT_TOLERANCE_SECONDS", default=2.0)
# Explain on the deal's timeline when bxsync blocks or overrides a person's change, in the portal's language
# (statussync/sync/comments.py).
BXSYNC_CRM_COMMENTS = env.bool("BXSYNC_CRM_COMMENTS", default=False)
BXSYNC_CRM_COMMENT_LANGUAGE = env("BXSYNC_CRM_COMMENT_LANGUAGE", default="ru")
BXSYNC_RECONCILE_MINUTES = env.int("BXSYNC_RECONCILE_MINUTES", default=5)
BXSYNC_RECONCILE_OVERLAP_SECONDS = env.int("BXSYNC_RECONCILE_OVERLAP_SECONDS", default=300)
BXSYNC_RECONCILE_INITIAL_DAYS = env.int("BXSYNC_RECONCILE_INITIAL_DAYS", default=7)
BXSYNC_AUDIT_RETENTION_DAYS = env.int("BXSYNC_AUDIT_RETENTION_DAYS", default=90)
BXSYNC_WORKERS = env.int("BXSYNC_WORKERS", default=2)
BXSYNC_PAYMENT_WORKERS = env.int("BXSYNC_PAYMENT_WORKERS", default=1)
BXSYNC_WEB_WORKERS = env.int("BXSYNC_WEB_WORKERS", default=2)
# The threads of each web process that run the app (granian's blocking threads). On PostgreSQL a webhook's
# commit waits for the disk's flush: with four threads a process several commits share one flush (with
# gunicorn's threads, scaled intake went from 388 to 602 events/s at 32 senders: docs/benchmarks.md "Servers
# measured"). On SQLite the threads would only queue for its one writer.
_ON_POSTGRESQL = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
BXSYNC_WEB_THREADS = env.int("BXSYNC_WEB_THREADS", default=4 if _ON_POSTGRESQL else 1)
# On PostgreSQL the webhook's statement is prepared on the server (statussync/upsert.py). Off behind a
# connection pooler that does not keep prepared statements across transactions (PgBouncer's transaction
# mode without max_prepared_statements, https://github.com/pgbouncer/pgbouncer/releases/tag/pgbouncer_1_21_0):
# the reason Django never prepares by default.
BXSYNC_WEBHOOK_PREPARED = env.bool("BXSYNC_WEBHOOK_PREPARED", default=True)
# GET /metrics answers a scraper sending `Authorization: Bearer <token>`. Without a token, nobody, unless the
# operator says the web server is bound to loopback with no proxy in front (docs/deploy.md "/metrics"): a
# proxy on this host that adds no X-Forwarded-For (nginx by default) would make every client look local.
BXSYNC_METRICS_TOKEN = env("BXSYNC_METRICS_TOKEN", default="")
BXSYNC_METRICS_LOOPBACK = env.bool("BXSYNC_METRICS_LOOPBACK", default=False)
# Wake-ups one web process sends per queue: at most one per this many seconds, and one more at the end of
# the interval if events came meanwhile (statussync/jobs.py `queue_wake_soon`). A storm of 1,000 events a
# second would otherwise cost 1,000 cache writes for wake-ups the cache's flag drops anyway.
BXSYNC_WAKE_COALESCE_SECONDS = env.float("BXSYNC_WAKE_COALESCE_SECONDS", default=0.25)
# The web server sends its wake-ups from a thread: a stored event answers 200 at once, even while Redis
# does not answer (its 5 s timeouts) or SQLite's write lock is taken (the database cache, the ORM broker).
BXSYNC_WAKE_FROM_THREAD = env("BXSYNC_PROCESS", default="") == "web"

# --- django-q2 (https://django-q2.readthedocs.io/en/master/configure.html) ---
# The queue only wakes workers: the Job table is the record of pending work, so broker redelivery is not
# needed and is switched off (ack_failures, max_attempts=1) to avoid django-q2's endless no-backoff retries.
# timeout < retry, as django-q2 requires, or a slow task is handed out twice.
Q_CLUSTER = {
    "name": env("Q_NAME", default="bxsync"),
    "workers": BXSYNC_WORKERS,
    "timeout": env.int("Q_TIMEOUT", default=600),
    "retry": env.int("Q_RETRY", default=660),
    "max_attempts": 1,
    "ack_failures": True,
    "queue_limit": 4,
    "save_limit": 200,
    "catch_up": False,
    "sync": env.bool("Q_SYNC", default=False),
    "ALT_CLUSTERS": {
        # Payment work has its own queue and workers so it never waits behind a bulk edit.
        "payments": {"workers": BXSYNC_PAYMENT_WORKERS},
    },
}
if REDIS_URL and env.bool("BXSYNC_REDIS_BROKER", default=True):
    Q_CLUSTER["redis"] = REDIS_URL
else:
    # The ORM broker has no blocking read: each idle poll is a query. Payments poll faster, to arrive within
    # a second.
    Q_CLUSTER.update({"orm": "default", "poll": env.float("Q_POLL", default=0.3)})
    Q_CLUSTER["ALT_CLUSTERS"]["payments"]["poll"] = min(Q_CLUSTER["poll"], 0.1)

# Webhook URLs hold a secret: keep them off DEBUG error pages and out of error reports.
DEFAULT_EXCEPTION_REPORTER_FILTER = "bxsync_project.error_reports.SecretSettingsFilter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # axes.apps announces itself at every start of every command.
    "loggers": {"urllib3": {"level": "WARNING"}, "axes.apps": {"level": "WARNING"}},
}
