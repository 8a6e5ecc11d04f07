#!/usr/bin/env bash
# Prints a Redis URL the tests can use: the machine's Redis on 127.0.0.1:6379 when it answers,
# else a private redis-server started here (installed from Debian's packages when absent).
set -euo pipefail
port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }

# The cache tests also start and stop a redis-server of their own, so the binary must be here.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >&2
fi
if port_answers 6379; then
  echo "redis://127.0.0.1:6379/15"
  exit 0
fi
PRIVATE_PORT=6391
if ! port_answers "$PRIVATE_PORT"; then
  redis-server --daemonize yes --bind 127.0.0.1 --port "$PRIVATE_PORT" --save "" --appendonly no \
    --dir /tmp --logfile /tmp/trajsite-test-redis.log >&2
  for _ in $(seq 50); do port_answers "$PRIVATE_PORT" && break; sleep 0.1; done
fi
echo "redis://127.0.0.1:$PRIVATE_PORT/15"
