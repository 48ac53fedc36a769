#!/usr/bin/env bash
# Install what the test suite needs on a Debian machine (as root): Python,
# PostgreSQL, Redis, Dovecot and Chromium. Start PostgreSQL and Redis when they are
# not running, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v python3 >/dev/null || need_packages+=(python3)
python3 -c "import venv, ensurepip" 2>/dev/null || need_packages+=(python3-venv)
command -v pg_ctlcluster >/dev/null || need_packages+=(postgresql)
command -v redis-server >/dev/null || need_packages+=(redis-server)
# The IMAP tests start Dovecot processes of their own on free ports; the
# package's system service is not used.
[ -x /usr/lib/dovecot/imap ] || need_packages+=(dovecot-imapd)
# The deploy/ checks: systemd-analyze verify and postconf.
command -v systemd-analyze >/dev/null || need_packages+=(systemd)
if ! command -v postconf >/dev/null; then
    # "No configuration": Postfix gets no main.cf, so it does not start.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    need_packages+=(postfix)
fi
# The browser tests drive Debian's Chromium through Playwright; Playwright
# never downloads a browser of its own here.
[ -x /usr/bin/chromium ] || need_packages+=(chromium)
# The DKIM tests make their RSA keys with the openssl command.
command -v openssl >/dev/null || need_packages+=(openssl)
if ((${#need_packages[@]})); then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_packages[@]}"
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
    for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
# The tests connect as postgres over TCP without a password.
if ! psql -h 127.0.0.1 -U postgres -c "select 1" >/dev/null 2>&1; then
    echo "PostgreSQL on 127.0.0.1 does not let user postgres in without a password;" >&2
    echo "set MAILGATE_TEST_POSTGRES_URL to an admin URL that works." >&2
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/mailgate-tests.log
    for _ in $(seq 30); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 1; done
fi

# A virtualenv of its own, so reinstalling for tests never changes the one
# a running gateway uses.
python3 -m venv .venv-test
.venv-test/bin/pip install -q --upgrade pip
.venv-test/bin/pip install -q -e '.[test]'
exec .venv-test/bin/pytest "$@"
