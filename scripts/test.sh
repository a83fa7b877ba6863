#!/usr/bin/env bash
# The whole test suite, runnable on a fresh machine: `bash scripts/test.sh`.
#
# Installs and starts what the tests need (PostgreSQL and MariaDB on 127.0.0.1, see
# scripts/services.sh), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "error: cargo not found; hint: install the Rust toolchain (https://rustup.rs)" >&2
    exit 1
fi

bash scripts/services.sh

# Tests use a cheap Argon2 setting through CAIRN_KDF_MEMORY_KIB where they need speed; the
# suite itself must not depend on anything from the caller's environment.
unset CAIRN_REPO CAIRN_PASSWORD CAIRN_PASSWORD_FILE CAIRN_KEY_FILE CAIRN_STATE_DIR
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

cargo test --workspace --locked "$@"
