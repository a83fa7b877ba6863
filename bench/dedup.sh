#!/usr/bin/env bash
# Day-to-day dedup of database backups, through the real CLI and real servers:
#
#   bash bench/dedup.sh            # PostgreSQL (pgbench scale 20), SQLite (~100 MB), MariaDB (~100 MB)
#   STORES="sqlite" bash bench/dedup.sh
#
# For each store: back up, change 1% of the rows of the big table in one contiguous id range,
# back up again, and report what the second backup added to the repository against the size
# of the dump (the target: at most 5%). Needs PostgreSQL and MariaDB on 127.0.0.1 as in
# scripts/services.sh (which it runs). Databases are created with unique names and dropped.
set -euo pipefail
cd "$(dirname "$0")/.."

STORES="${STORES:-postgres sqlite mysql}"
bash scripts/services.sh
cargo build --release --locked -p cairn >&2
cairn="$PWD/target/release/cairn"
work=$(mktemp -d /tmp/cairn-dedup.XXXXXX)
db="cairn_dedup_$$"
cleanup() {
    dropdb -h 127.0.0.1 -U postgres --if-exists "$db" 2>/dev/null || true
    mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

export CAIRN_PASSWORD=bench CAIRN_NO_PROGRESS=1
unset CAIRN_REPO CAIRN_CONFIG CAIRN_PASSWORD_FILE CAIRN_KEY_FILE
cat > "$work/cairn.toml" <<EOF
[repository]
path = "repo"

[jobs.postgres]
[[jobs.postgres.sources]]
type = "postgres"
url = "postgres://postgres@127.0.0.1:5432/$db"

[jobs.sqlite]
[[jobs.sqlite.sources]]
type = "sqlite"
path = "app.db"

[jobs.mysql]
[[jobs.mysql.sources]]
type = "mysql"
url = "mysql://root@127.0.0.1:3306/$db"
EOF
export CAIRN_CONFIG="$work/cairn.toml"
"$cairn" init >/dev/null

# backup JOB -> "total_bytes bytes_added seconds" of its one source
backup() {
    local started ended
    started=$(date +%s.%N)
    "$cairn" backup "$1" --json >"$work/out.json"
    ended=$(date +%s.%N)
    python3 - "$work/out.json" "$started" "$ended" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))[0]
s = r["sources"][0]
assert s["status"] == "ok", s
print(s["stats"]["total_bytes"], s["stats"]["bytes_added"], round(float(sys.argv[3]) - float(sys.argv[2]), 2))
EOF
}

rows=()
measure() { # name change-description
    read -r size1 added1 secs1 < <(backup "$1")
    "change_$1"
    read -r size2 added2 secs2 < <(backup "$1")
    rows+=("$(python3 -c "
s1,a1,t1,s2,a2,t2=$size1,$added1,$secs1,$size2,$added2,$secs2
mib=lambda b: f'{b/2**20:.1f} MiB'
print(f'| $1 | $2 | {mib(s2)} | {mib(a1)} ({t1:.1f} s) | {mib(a2)} ({t2:.1f} s) | {100*a2/s2:.2f}% |')")")
}

setup_postgres() {
    createdb -h 127.0.0.1 -U postgres "$db"
    pgbench -h 127.0.0.1 -U postgres -i -s 20 -q "$db" >/dev/null 2>&1
}
change_postgres() { # 1% of pgbench_accounts (2,000,000 rows) in one id range
    psql -h 127.0.0.1 -U postgres -q -d "$db" -c \
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN 1000001 AND 1020000" >/dev/null
}

setup_sqlite() { # ~100 MB: 1,000,000 rows of ~100 bytes
    python3 - "$work/app.db" <<'EOF'
import sqlite3, sys, hashlib
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, kind TEXT, payload TEXT, amount INTEGER)")
c.execute("CREATE INDEX events_kind ON events(kind)")
rows = ((i, f"kind{i % 17}", hashlib.sha256(str(i).encode()).hexdigest() + "-" + str(i) * 3, i % 1000) for i in range(1, 1_000_001))
c.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)
c.commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.close()
EOF
}
change_sqlite() {
    python3 -c "
import sqlite3; c = sqlite3.connect('$work/app.db')
c.execute('UPDATE events SET amount = amount + 1 WHERE id BETWEEN 500001 AND 510000'); c.commit()"
}

setup_mysql() { # ~100 MB dump: 1,000,000 rows
    mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE $db; CREATE TABLE $db.events(
        id INT PRIMARY KEY, kind VARCHAR(16), payload VARCHAR(200), amount INT) ENGINE=InnoDB;
        USE $db; INSERT INTO events SELECT seq, CONCAT('kind', seq % 17), CONCAT(SHA2(seq, 256), '-', REPEAT(seq, 3)), seq % 1000
        FROM seq_1_to_1000000;"
}
change_mysql() {
    mariadb -h 127.0.0.1 -u root -e "UPDATE $db.events SET amount = amount + 1 WHERE id BETWEEN 500001 AND 510000"
}

for store in $STORES; do
    echo "== $store" >&2
    "setup_$store"
    case $store in
        postgres) measure postgres "pgbench -s 20; 20,000 of 2,000,000 accounts updated" ;;
        sqlite) measure sqlite "1,000,000 rows; 10,000 updated" ;;
        mysql) measure mysql "1,000,000 rows (InnoDB); 10,000 updated" ;;
    esac
done

echo
echo "cairn $(git rev-parse --short HEAD), $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| store | data and change | dump size | first backup added | second backup added | second / dump |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
