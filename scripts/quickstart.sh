#!/usr/bin/env bash
# Quick start: build cairn, then run the job `app` of the annotated example config
# (examples/cairn.toml): the example application's files and its SQLite database, backed up
# into a local repository; list the snapshots, show the newest, the run history and `cairn status`.
#
#   bash scripts/quickstart.sh
#
# The repository goes to .cairn-quickstart/repo (ignored by git; $CAIRN_REPO overrides it).
# The demo password is "quickstart" unless CAIRN_PASSWORD is set; real repositories deserve
# a real one (see password_file in examples/cairn.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p cairn
cairn=./target/release/cairn
export CAIRN_CONFIG="$PWD/examples/cairn.toml"
export CAIRN_PASSWORD="${CAIRN_PASSWORD:-quickstart}"
export CAIRN_STATE_DIR="${CAIRN_STATE_DIR:-$PWD/.cairn-quickstart/state}"   # run history

"$cairn" config check
if [ ! -e "${CAIRN_REPO:-.cairn-quickstart/repo}/config" ]; then
    "$cairn" init
fi
"$cairn" backup app --tag quickstart
"$cairn" snapshots --job app
"$cairn" show latest --job app
"$cairn" history --job app
"$cairn" status
