#!/usr/bin/env bash
# Make sure the database servers the tests talk to are installed and running on loopback:
#   PostgreSQL 127.0.0.1:5432, trust auth for local TCP (user postgres)
#   MariaDB    127.0.0.1:3306, root with an empty password
# Installs them from Debian's packages when missing (needs root), starts them when stopped,
# and waits (bounded) until they answer. Safe to run again: it changes nothing that works.
set -euo pipefail

log() { echo "services: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_install() {
    log "installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# wait_for SECONDS COMMAND...: run COMMAND until it succeeds, at most SECONDS.
wait_for() {
    local limit=$1; shift
    for _ in $(seq 1 "$((limit * 2))"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    return 1
}

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }

ensure_postgres() {
    if command -v pg_isready >/dev/null && pg_up; then return; fi
    local fresh=0
    if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
        apt_install postgresql postgresql-client postgresql-contrib
        fresh=1
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -1)
    local hba=/etc/postgresql/$version/main/pg_hba.conf
    if [ "$fresh" = 1 ] || ! grep -Eq '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
        # Tests connect over TCP without a password, as on the machines this project runs on.
        as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    fi
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for 60 pg_up || { log "PostgreSQL did not start"; exit 1; }
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null 2>&1 || true
}

maria_up() { mariadb -h 127.0.0.1 -P 3306 -u root --connect-timeout=2 -e 'select 1' >/dev/null 2>&1; }

ensure_mariadb() {
    if command -v mariadb >/dev/null && maria_up; then return; fi
    if [ ! -x /usr/sbin/mariadbd ]; then
        apt_install mariadb-server mariadb-client
    fi
    log "starting MariaDB"
    as_root mkdir -p /run/mysqld
    as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    wait_for 60 mariadb --protocol=socket -u root -e 'select 1' || wait_for 5 maria_up || {
        log "MariaDB did not start"
        exit 1
    }
    if ! maria_up; then
        # A fresh Debian install lets root in through the socket only; tests use TCP.
        as_root mariadb --protocol=socket -u root -e \
            "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
             CREATE USER IF NOT EXISTS root@'127.0.0.1' IDENTIFIED BY '';
             GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;"
    fi
    wait_for 30 maria_up || { log "MariaDB does not accept root over TCP"; exit 1; }
}

ensure_tools() {
    local missing=()
    command -v sqlite3 >/dev/null || missing+=(sqlite3)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

ensure_postgres
ensure_mariadb
ensure_tools
log "PostgreSQL and MariaDB are up"
