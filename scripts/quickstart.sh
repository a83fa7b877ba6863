#!/usr/bin/env bash
# Quick start: build cairn, back up the bundled example data into a local repository, list it.
#
#   bash scripts/quickstart.sh
#
# The repository goes to .cairn-quickstart/repo (ignored by git). The demo password is
# "quickstart" unless CAIRN_PASSWORD is set; real repositories deserve a real one.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p cairn
cairn=./target/release/cairn
export CAIRN_REPO="${CAIRN_REPO:-$PWD/.cairn-quickstart/repo}"
export CAIRN_PASSWORD="${CAIRN_PASSWORD:-quickstart}"

if [ ! -e "$CAIRN_REPO/config" ]; then
    "$cairn" init
fi
"$cairn" backup examples/app --exclude '*.log' --tag quickstart
"$cairn" snapshots
