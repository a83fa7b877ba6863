#!/usr/bin/env bash
# Creates the pristine benchmark datasets (once; later runs reuse them) and
# prints one "<id><TAB><path>" line per dataset on stdout for compare.sh.
#
#   a  a copy of the Rust toolchain tree (~/.rustup: ~2.7 GB, ~118k files)
#   b  2 GiB of incompressible (seeded pseudo-random) bytes in one file
#   c  1 GiB of log-like text in one file (zstd -3 compresses it ~3.5x)
#
# QUICK=1 makes small variants (a: every 10th file of the tree, ~170 MB;
# b, c: 200 MiB) under a separate directory, so quick and full never mix.
#
# Env: BENCH_DIR (default /var/tmp/cairn-bench), DATASETS (default "a b c"),
#      QUICK (0|1), TREE_SRC (default ~/.rustup).
#
# The pristine copies are never handed to a backup tool and never modified:
# compare.sh copies them to a scratch path for every tool run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(realpath -m "${BENCH_DIR:-/var/tmp/cairn-bench}")
DATASETS=${DATASETS:-a b c}
QUICK=${QUICK:-0}
TREE_SRC=${TREE_SRC:-$HOME/.rustup}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ $QUICK == 1 ]]; then
    mode=quick; size_b=200M; size_c=200M
else
    mode=full; size_b=2G; size_c=1G
fi
DATA=$BENCH_DIR/data/$mode

# A dataset directory counts as present only once its .complete stamp exists,
# so an interrupted generation is redone instead of silently reused.
make_tree() {
    local dir=$DATA/a
    [[ -d $TREE_SRC ]] || die "dataset a: source tree $TREE_SRC does not exist (set TREE_SRC)"
    rm -rf "$dir"
    mkdir -p "$dir"
    if [[ $mode == full ]]; then
        log "dataset a: copying $TREE_SRC -> $dir/rustup (cp -a, source is only read)"
        cp -a "$TREE_SRC" "$dir/rustup"
    else
        # Every 10th entry in byte-sorted path order: deterministic, keeps the
        # many-small-files character of the tree, and skips most of the few
        # 100+ MB shared libraries.
        log "dataset a (quick): copying every 10th file of $TREE_SRC -> $dir/rustup"
        mkdir -p "$dir/rustup"
        (cd "$TREE_SRC" && find . \( -type f -o -type l \) -print0 | LC_ALL=C sort -z \
            | sed -z -n '0~10p' \
            | tar --null --no-recursion -T - -cf -) \
            | tar -xpf - -C "$dir/rustup"
    fi
    touch "$dir/.complete"
}

make_file() { # id kind size filename
    local id=$1 kind=$2 size=$3 name=$4 dir=$DATA/$1
    rm -rf "$dir"
    mkdir -p "$dir"
    log "dataset $id: generating $size of $kind data -> $dir/$name"
    python3 "$HERE/datagen.py" "$kind" "$dir/$name" "$size" --seed 1
    touch "$dir/.complete"
}

for ds in $DATASETS; do
    case $ds in
        a) name=rustup;     [[ -e $DATA/a/.complete ]] || make_tree ;;
        b) name=random.bin; [[ -e $DATA/b/.complete ]] || make_file b random "$size_b" "$name" ;;
        c) name=text.log;   [[ -e $DATA/c/.complete ]] || make_file c text "$size_c" "$name" ;;
        *) die "unknown dataset '$ds' (expected a, b or c)" ;;
    esac
    printf '%s\t%s\n' "$ds" "$DATA/$ds/$name"
done
