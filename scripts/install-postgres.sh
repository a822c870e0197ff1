#!/usr/bin/env bash
# Installs Debian's PostgreSQL server binaries (/usr/lib/postgresql/*/bin), which the tests start as a throw-away
# cluster in a temporary folder (tests/postgres.py: initdb, pg_ctl on 127.0.0.1, stopped at the end). The cluster
# Debian's package creates is stopped again: the tests need only the binaries. Idempotent; uses sudo only when not
# root; says clearly why when it cannot (the PostgreSQL tests then skip, loudly, or fail under CI).
set -uo pipefail

if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    echo "install-postgres: PostgreSQL already installed ($(ls -d /usr/lib/postgresql/*/bin | tail -1))"
    exit 0
fi
. "$(dirname "$0")/apt-install.sh"
apt_install install-postgres postgresql "the PostgreSQL tests"
# the package may start its own cluster as a service; the tests start theirs
$SUDO pg_ctlcluster --help >/dev/null 2>&1 && for c in $(ls /etc/postgresql 2>/dev/null); do
    for n in $(ls /etc/postgresql/"$c" 2>/dev/null); do $SUDO pg_ctlcluster "$c" "$n" stop >/dev/null 2>&1; done
done
echo "install-postgres: installed $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"
