"""gunicorn settings for trajsite (`gunicorn -c trajsite/gunicorn.conf.py trajsite.wsgi`), sized from
the machine and overridable from the environment.

Each worker process holds its own projection of the store (about 200 MB per million trajectories),
so workers are few (one per core) and requests share them through threads: list answers spend most
of their time in numpy and LanceDB, which release the GIL.
"""

import os

bind = os.environ.get("TRAJSITE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 2)
threads = int(os.environ.get("TRAJSITE_THREADS", "4"))
# Exports stream for minutes; a worker is only presumed stuck after this long without a heartbeat.
timeout = int(os.environ.get("TRAJSITE_WORKER_TIMEOUT", "120"))
graceful_timeout = 30
# Above the pauses of people clicking through pages, so their next request reuses the connection.
keepalive = 5
# Not recycled after N requests: a fresh worker rebuilds its projection (seconds at 1M rows).
max_requests = 0
accesslog = os.environ.get("TRAJSITE_ACCESS_LOG", "-")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_fork(server, worker):
    import sys

    from trajsite.memory import keep_heap_small

    # Each worker frees large arrays all day from many threads: see trajsite/memory.py.
    keep_heap_small()
    # A thread back from Redis or LanceDB waits for the interpreter lock until a busy thread yields it,
    # by default every 5 ms: with several round trips per request, that wait was the latency.
    sys.setswitchinterval(float(os.environ.get("TRAJSITE_SWITCH_INTERVAL", "0.001")))
