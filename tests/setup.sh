#!/usr/bin/env bash
# What the test suite needs besides the Python packages of uv.lock, set up or named: `make test`,
# `make test-fast` and .ci/run all run this first, so a fresh machine needs nothing by hand.
#
#   PostgreSQL  on FIN_TEST_POSTGRES_URL (default 127.0.0.1:5432): started if installed but stopped
#   RabbitMQ    on 127.0.0.1:5672 with rabbitmqctl (tests/e2e/test_celery.py): started likewise
#   prometheus  and promtool (tests/e2e/test_metrics_prometheus.py, tests/unit/test_metrics_deploy.py)
#   systemd-analyze (tests/unit/test_deploy.py verifies the shipped units)
#   faketime    and unshare (tests/integration/test_deployed_checkout.py: a read-only checkout
#               loaded on another day)
#
# A missing Debian package is installed when this runs as root with apt-get; otherwise it stops
# with one line saying what to install. Nothing here is skipped: a test whose tool is absent
# fails naming it (tests/helpers.py: required_tool), never silently skips.
set -euo pipefail

fail() { echo "tests/setup.sh: $*" >&2; exit 1; }
say() { echo "== $*"; }

apt_updated=""
install_debian() {  # install_debian PACKAGE WHY
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    fail "$2 is missing: install Debian's '$1' package (as root: apt-get install $1)"
  fi
  say "$2 is missing: installing Debian's $1 package"
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$apt_updated" ]; then
    apt-get update -qq >/dev/null || fail "apt-get update failed; install '$1' by hand"
    apt_updated=1
  fi
  apt-get install -y -qq --no-install-recommends "$1" >/dev/null \
    || fail "apt-get install $1 failed; install it by hand"
}

wait_until() {  # wait_until SECONDS COMMAND...: poll every 0.5 s
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# -- PostgreSQL ---------------------------------------------------------------------------------
pg_url=${FIN_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
pg_ready() { pg_isready -q -d "$pg_url" 2>/dev/null; }
command -v pg_isready >/dev/null 2>&1 || install_debian postgresql-client "pg_isready"
if ! pg_ready; then
  if [ -z "${FIN_TEST_POSTGRES_URL:-}" ] && command -v pg_ctlcluster >/dev/null 2>&1 \
    && [ -d /etc/postgresql ]; then
    say "PostgreSQL is not answering on 127.0.0.1:5432: starting it"
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_until 30 pg_ready || true
  fi
  where=${pg_url#*://}; where=${where#*@}; where=${where%%/*}  # host:port, no credentials
  pg_ready || fail "PostgreSQL is not reachable at $where: install and start it (Debian:" \
    "postgresql), or point FIN_TEST_POSTGRES_URL at an admin URL of a running server"
fi
say "PostgreSQL answers"

# -- RabbitMQ -----------------------------------------------------------------------------------
rabbit_ready() { timeout 3 bash -c '</dev/tcp/127.0.0.1/5672' 2>/dev/null; }
command -v rabbitmqctl >/dev/null 2>&1 \
  || fail "rabbitmqctl is missing (the Celery story stops and restarts the broker):" \
    "install RabbitMQ (Debian: rabbitmq-server)"
if ! rabbit_ready; then
  say "RabbitMQ is not answering on 127.0.0.1:5672: starting it"
  # A node whose app was left stopped (a test interrupted mid-outage), or no node at all.
  timeout 60 rabbitmqctl -q start_app >/dev/null 2>&1 || rabbitmq-server -detached || true
  wait_until 90 rabbit_ready || fail "RabbitMQ could not be started on 127.0.0.1:5672" \
    "(see /var/log/rabbitmq): start it with 'rabbitmq-server -detached'"
fi
say "RabbitMQ answers"

# -- commands the tests run ---------------------------------------------------------------------
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 \
  || install_debian prometheus "prometheus/promtool"
command -v systemd-analyze >/dev/null 2>&1 || install_debian systemd "systemd-analyze"
command -v faketime >/dev/null 2>&1 || install_debian faketime "faketime"
command -v unshare >/dev/null 2>&1 || install_debian util-linux "unshare"
for tool in prometheus promtool systemd-analyze faketime unshare; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is still not on PATH after installing it"
done
say "$(prometheus --version 2>&1 | head -n 1)"
