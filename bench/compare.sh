#!/usr/bin/env bash
# Benchmarks cairn against restic and borg on the same data in one run and
# prints a markdown table (stdout; also saved to $BENCH_DIR/results-<date>.md).
# Progress goes to stderr. See bench/README.md for the steps and env knobs.
#
#   bash bench/compare.sh                     # everything (~1 h on 2 cores)
#   QUICK=1 bash bench/compare.sh             # ~200 MB datasets, smoke test
#   DATASETS="b" TOOLS="restic borg" bash bench/compare.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

BENCH_DIR=$(realpath -m "${BENCH_DIR:-/var/tmp/cairn-bench}")
DATASETS=${DATASETS:-a b c}
TOOLS=${TOOLS:-cairn restic borg}
QUICK=${QUICK:-0}
COLD_REPO=${COLD_REPO:-1}         # 1: restores read their repository from the disk
STEP_TIMEOUT=${STEP_TIMEOUT:-7200}   # seconds; a hung tool must not hang the run
export BENCH_DIR DATASETS QUICK

RUN_ID=$(date +%Y%m%d-%H%M%S)
LOG_DIR=$BENCH_DIR/logs/$RUN_ID
RESULTS=$BENCH_DIR/results-$RUN_ID.md
# Every tool run works under $RUN_DIR/<dataset>/<tool>: a copy of the dataset,
# the repository, the restore target and the tool's caches. Nothing there is
# deleted until every tool has run on the dataset: on ext4 without a journal,
# creating files is much slower for minutes after many files were deleted, and
# deleting one tool's copies before the next tool's restore would bill that to
# the next tool (see bench/README.md).
RUN_DIR=$BENCH_DIR/run

# Same passphrase everywhere; encryption is on for all three tools.
export RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench CAIRN_PASSWORD=bench
export BORG_DISPLAY_PASSPHRASE=no

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
has_tool() { [[ " $TOOLS " == *" $1 "* ]]; }

for t in $TOOLS; do
    case $t in cairn|restic|borg) ;; *) die "unknown tool '$t' in TOOLS (expected cairn, restic, borg)" ;; esac
done
for d in $DATASETS; do
    case $d in a|b|c) ;; *) die "unknown dataset '$d' in DATASETS (expected a, b, c)" ;; esac
done
[[ -n ${TOOLS// /} ]] || die "TOOLS is empty"
[[ -n ${DATASETS// /} ]] || die "DATASETS is empty"

# ---------------------------------------------------------------- setup ----

install_missing() {
    local pkgs=()
    has_tool restic && ! command -v restic >/dev/null && pkgs+=(restic)
    has_tool borg && ! command -v borg >/dev/null && pkgs+=(borgbackup)
    [[ -x /usr/bin/time ]] || pkgs+=(time)   # the bash builtin cannot report peak RSS
    command -v zstd >/dev/null || pkgs+=(zstd)  # for the floors (see measure_floors)
    command -v python3 >/dev/null || pkgs+=(python3)
    ((${#pkgs[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || die "need root to install: ${pkgs[*]}"
    log "installing ${pkgs[*]} (apt-get)"
    apt-get update -q >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >&2 \
        || die "apt-get install ${pkgs[*]} failed"
}

build_cairn() {
    command -v cargo >/dev/null || die "cargo not found; cannot build cairn (or run with TOOLS='restic borg')"
    log "building cairn: cargo build --release -p cairn"
    if ! (cd "$ROOT" && cargo build --release -p cairn) >&2; then
        die "cairn failed to build (cargo build --release -p cairn); fix the build, or benchmark only the others with TOOLS='restic borg'"
    fi
    CAIRN=${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn
    [[ -x $CAIRN ]] || die "build succeeded but $CAIRN is missing"
}

install_missing
mkdir -p "$BENCH_DIR" "$LOG_DIR"
# CAIRN_BIN skips the build and benchmarks that binary instead.
if has_tool cairn; then
    if [[ -n ${CAIRN_BIN:-} ]]; then
        CAIRN=$(realpath "$CAIRN_BIN")
        [[ -x $CAIRN ]] || die "CAIRN_BIN=$CAIRN_BIN is not an executable"
        log "using prebuilt cairn: $CAIRN"
    else
        build_cairn
    fi
fi

BORG_MAJOR=0
BORG2_CREATE=rcreate
if has_tool borg; then
    BORG_MAJOR=$(borg --version | awk '{split($2, v, "."); print v[1]}')
    # borg 2 betas renamed rcreate to repo-create; use whichever this one has.
    if [[ $BORG_MAJOR -ge 2 ]] && borg repo-create --help >/dev/null 2>&1; then
        BORG2_CREATE="repo-create"
    fi
fi

tool_version() {
    case $1 in
        cairn)
            local v rev
            v=$("$CAIRN" --version 2>/dev/null | head -n1) || v="cairn (no --version)"
            rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || rev="uncommitted"
            if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null | head -n1) ]]; then rev+="+dirty"; fi
            echo "$v ($rev)" ;;
        restic) restic version | head -n1 | awk '{print $1, $2}' ;;
        borg) borg --version ;;
    esac
}

avail_kb=$(df -Pk "$BENCH_DIR" | awk 'NR == 2 {print $4}')
need_gb=$([[ $QUICK == 1 ]] && echo 4 || echo 24)
if ((avail_kb < need_gb * 1024 * 1024)); then
    die "only $((avail_kb / 1024 / 1024)) GiB free under $BENCH_DIR; a run needs about $need_gb GiB (every tool's copy, repository and restore of a dataset are kept until all tools ran on it). hint: free space, set BENCH_DIR to a roomier disk, or run fewer DATASETS"
fi

# Dataset id -> pristine path, from the generator (creates what is missing).
declare -A PRISTINE=()
while IFS=$'\t' read -r id path; do
    PRISTINE[$id]=$path
done < <(bash "$HERE/make-datasets.sh")
for d in $DATASETS; do
    [[ -n ${PRISTINE[$d]:-} && -e ${PRISTINE[$d]} ]] || die "dataset $d was not created"
done

# ---------------------------------------------------------------- tools ----
# Each tool_* function prints nothing and leaves a command in CMD (an array)
# so it can run under /usr/bin/time, which cannot time shell functions.

tool_init() { # tool repo
    case $1 in
        cairn)  CMD=("$CAIRN" init --repo "$2") ;;
        restic) CMD=(restic init --repo "$2") ;;
        borg)
            if [[ $BORG_MAJOR -ge 2 ]]; then
                CMD=(borg -r "$2" "$BORG2_CREATE" --encryption=repokey-blake2-aes-ocb)
            else
                CMD=(borg init --encryption=repokey-blake2 "$2")
            fi ;;
    esac
}

tool_backup() { # tool repo n src
    case $1 in
        cairn)  CMD=("$CAIRN" backup --repo "$2" "$4") ;;
        restic) CMD=(restic backup --repo "$2" "$4") ;;
        borg)
            if [[ $BORG_MAJOR -ge 2 ]]; then
                CMD=(borg -r "$2" create --compression "zstd,3" "bench-$3" "$4")
            else
                CMD=(borg create --compression "zstd,3" "$2::bench-$3" "$4")
            fi ;;
    esac
}

tool_restore() { # tool repo n out   (borg runs with cwd=out, see run_step)
    case $1 in
        cairn)  CMD=("$CAIRN" restore latest --repo "$2" --to "$4") ;;
        restic) CMD=(restic restore latest --repo "$2" --target "$4") ;;
        borg)
            if [[ $BORG_MAJOR -ge 2 ]]; then
                CMD=(borg -r "$2" extract "bench-$3")
            else
                CMD=(borg extract "$2::bench-$3")
            fi ;;
    esac
}

# Where each tool puts a backed-up path when restoring into $out:
# restic keeps the absolute path (out/abs/path), borg the path without its
# leading slash (same place), cairn only the basename (out/<basename>).
restored_path() { # tool out src
    case $1 in
        cairn) echo "$2/$(basename "$3")" ;;
        restic|borg) echo "$2$3" ;;
    esac
}

# ---------------------------------------------------------------- steps ----

# Runs CMD under /usr/bin/time in cwd $1, logging to $2; sets WALL (s) and
# RSS_KB. Returns the command's exit status.
run_step() { # cwd logfile
    local cwd=$1 logf=$2 tf rc=0 line
    tf=$(mktemp)
    # Flush earlier writes (dataset copy, previous step's repo) so that
    # their writeback is not billed to this step.
    sync
    printf '$ %s\n' "${CMD[*]}" >>"$logf"
    (cd "$cwd" && /usr/bin/time -f '%e %M' -o "$tf" \
        timeout -k 60 "$STEP_TIMEOUT" "${CMD[@]}") </dev/null >>"$logf" 2>&1 || rc=$?
    # time(1) prepends "Command exited with non-zero status N" on failure.
    line=$(tail -n1 "$tf")
    rm -f "$tf"
    read -r WALL RSS_KB <<<"$line"
    [[ $WALL =~ ^[0-9.]+$ ]] || WALL=0
    [[ $RSS_KB =~ ^[0-9]+$ ]] || RSS_KB=0
    ((rc == 124)) && echo "(timed out after ${STEP_TIMEOUT}s)" >>"$logf"
    return "$rc"
}

# Reads every byte once so all tools start from the same warm page cache.
# tar into a pipe really reads the files (GNU tar skips reads for /dev/null).
warm_cache() {
    tar -cf - -C "$(dirname "$1")" "$(basename "$1")" | wc -c >/dev/null
}

# Drop a repository's files from the page cache before its restore, so that every
# tool reads its repository from the disk, as a restore long after the backup does
# (COLD_REPO=0 keeps them cached). Needs no privileges: each file is synced (a tool
# may not have) and its clean pages are dropped with posix_fadvise(DONTNEED).
evict_from_cache() { # dir
    python3 - "$1" <<'PY'
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for name in files:
        fd = os.open(os.path.join(root, name), os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
PY
}

# The "1% changed" step. Deterministic, so every tool sees the same change.
modify_one_percent() { # dataset path
    local ds=$1 path=$2 files i n=0
    case $ds in
        a)  # append a line to every 100th regular file in byte-sorted order
            mapfile -d '' files < <(cd "$path" && find . -type f -print0 | LC_ALL=C sort -z)
            for ((i = 99; i < ${#files[@]}; i += 100)); do
                printf 'cairn-bench: modified\n' >>"$path/${files[i]}"
                n=$((n + 1))
            done
            log "    modified $n of ${#files[@]} files" ;;
        b)  python3 "$HERE/datagen.py" modify "$path" --kind random --seed 2 2>&1 | sed 's/^/    /' >&2 ;;
        c)  python3 "$HERE/datagen.py" modify "$path" --kind text --seed 2 2>&1 | sed 's/^/    /' >&2 ;;
    esac
}

# Prints OK or FAIL; details go to the log.
verify_content() { # expected restored logfile
    local exp=$1 got=$2 logf=$3
    if [[ ! -e $got && ! -L $got ]]; then
        echo "restored path $got does not exist; restore dir has:" >>"$logf"
        (cd "$(dirname "$got")" 2>/dev/null && ls -la) >>"$logf" 2>&1 || true
        echo FAIL; return
    fi
    if [[ -d $exp ]]; then
        if diff -r --no-dereference "$exp" "$got" >"$logf.diff" 2>&1; then echo OK; else
            head -n 50 "$logf.diff" >>"$logf"; echo FAIL
        fi
    else
        if cmp "$exp" "$got" >>"$logf" 2>&1; then echo OK; else echo FAIL; fi
    fi
    rm -f "$logf.diff"
}

# Compares file types, permission bits and (for regular files) whole-second
# mtimes. Prints OK or "<n> diffs". Not part of the content verdict: it just
# shows how faithful each tool's restore is.
verify_metadata() { # expected restored logfile
    local exp=$1 got=$2 logf=$3 n
    [[ -e $got || -L $got ]] || { echo "-"; return; }
    meta_list() {
        (cd "$(dirname "$1")" && find "$(basename "$1")" -printf '%y %m %p\t%T@\n') \
            | awk -F'\t' '{ if (substr($1, 1, 1) == "f") { split($2, t, "."); print $1, t[1] } else print $1 }' \
            | LC_ALL=C sort
    }
    n=$(diff <(meta_list "$exp") <(meta_list "$got") | tee -a "$logf" | grep -c '^<' || true)
    if ((n == 0)); then echo OK; else echo "$n differ"; fi
}

# Runs CMD via run_step; a failure is logged and reported to the caller.
# borg's exit status 1 only means "warnings" (e.g. a file changed while being
# read), which the other tools also tolerate, so it counts as success.
timed() { # tool what cwd logfile
    local rc=0
    run_step "$3" "$4" || rc=$?
    if ((rc == 1)) && [[ $1 == borg ]]; then
        log "[$1] $2: borg finished with warnings (exit 1), see $4"
        rc=0
    fi
    if ((rc != 0)); then
        log "[$1] $2 FAILED (exit $rc), last lines of $4:"
        tail -n 5 "$4" | sed 's/^/    /' >&2
        FAILED=1
    fi
    return "$rc"
}

# ---------------------------------------------------------------- run ------

declare -A R=()   # "dataset|step|tool" -> value
FAILED=0

du_bytes() { du -sb "$1" | cut -f1; }

# One tool on one dataset: all steps, on a fresh copy of the pristine data.
bench_one() { # dataset tool
    local ds=$1 tool=$2 pristine=${PRISTINE[$1]}
    local base=$RUN_DIR/$1/$2
    local src=$base/work/$(basename "$pristine")
    local repo=$base/repo out=$base/restore state=$base/state
    local logp=$LOG_DIR/$ds-$tool n got

    log "[$ds/$tool] fresh copy of the dataset -> $src"
    mkdir -p "$base/work" "$state/cache" "$state/config"
    cp -a "$pristine" "$src"
    # The copy's writeback is not the next tool's work: without this, it runs
    # during the first backup, for as long as the disk takes to write the copy.
    sync -f "$src"
    # Per-run caches (borg files cache, restic metadata cache, cairn's, if
    # any) live under $state: no run sees another run's cache, and ~/.cache
    # is left alone.
    export XDG_CACHE_HOME=$state/cache XDG_CONFIG_HOME=$state/config

    log "[$ds/$tool] warm-up read of the dataset (page cache is not dropped)"
    warm_cache "$src"

    tool_init "$tool" "$repo"
    if ! timed "$tool" "$ds: init" "$base" "$logp-init.log"; then
        R[$ds|b1_s|$tool]="ERR (init)"; return 0
    fi

    local labels=([1]="first backup" [2]="unchanged backup" [3]="backup after 1% change")
    for n in 1 2 3; do
        if ((n == 3)); then
            log "[$ds/$tool] modifying 1% of the data"
            modify_one_percent "$ds" "$src"
        fi
        tool_backup "$tool" "$repo" "$n" "$src"
        log "[$ds/$tool] ${labels[n]}"
        if ! timed "$tool" "$ds: backup $n" "$base" "$logp-backup$n.log"; then
            R[$ds|b${n}_s|$tool]=ERR; return 0
        fi
        R[$ds|b${n}_s|$tool]=$WALL
        R[$ds|b${n}_rss|$tool]=$RSS_KB
        log "[$ds/$tool]   ${WALL}s, peak RSS $((RSS_KB / 1024)) MiB"
        ((n == 1)) && R[$ds|size1|$tool]=$(du_bytes "$repo")
    done
    R[$ds|size3|$tool]=$(du_bytes "$repo")

    mkdir -p "$out"
    if [[ $COLD_REPO == 1 ]]; then
        log "[$ds/$tool] dropping the repository from the page cache"
        evict_from_cache "$repo"
    fi
    tool_restore "$tool" "$repo" 3 "$out"
    log "[$ds/$tool] restore latest"
    if ! timed "$tool" "$ds: restore" "$out" "$logp-restore.log"; then
        R[$ds|rs_s|$tool]=ERR; return 0
    fi
    R[$ds|rs_s|$tool]=$WALL
    R[$ds|rs_rss|$tool]=$RSS_KB
    log "[$ds/$tool]   ${WALL}s, peak RSS $((RSS_KB / 1024)) MiB; verifying"

    got=$(restored_path "$tool" "$out" "$src")
    R[$ds|verify|$tool]=$(verify_content "$src" "$got" "$logp-verify.log")
    R[$ds|meta|$tool]=$(verify_metadata "$src" "$got" "$logp-verify.log")
    [[ ${R[$ds|verify|$tool]} == OK ]] || FAILED=1
    log "[$ds/$tool]   content ${R[$ds|verify|$tool]}, metadata ${R[$ds|meta|$tool]}"
}

declare -A DS_DESC=()
describe_dataset() { # dataset -> "name: N files, X MiB"
    local p=${PRISTINE[$1]} files bytes
    files=$(find "$p" -type f | wc -l)
    bytes=$(du -sb "$p" | cut -f1)
    awk -v id="$1" -v n="$(basename "$p")" -v f="$files" -v b="$bytes" \
        'BEGIN { printf "%s = %s: %d files, %.1f MiB", id, n, f, b / 1048576 }'
}

# What no backup tool can beat on this machine, measured beside the tools: reading
# every byte once (tar into a pipe), reading and compressing it with zstd at cairn's
# default level on every core, and writing as many bytes as cairn's first backup
# stored, with fsync, past the page cache (O_DIRECT, as cairn writes packs; through
# the cache the same write took 7-8 s for 2 GiB on a VM where direct took 1.5 s).
# A first backup cannot take less than the slowest of these.
# For restores: extracting an uncompressed tar of the data (read from the page cache)
# into a new directory with tar -x: creating the files and writing their bytes, and
# nothing else.
declare -A F=()   # "dataset|floor" -> seconds
measure_floors() { # dataset
    local ds=$1 p=${PRISTINE[$1]} bytes logf=$LOG_DIR/$1-floors.log
    local dir base
    dir=$(dirname "$p"); base=$(basename "$p")
    log "[$ds/floors] read, read + zstd -2 -T$(nproc), write + fsync, tar -x"
    warm_cache "$p"
    CMD=(bash -c 'tar -cf - -C "$1" "$2" | cat >/dev/null' floor "$dir" "$base")
    run_step "$BENCH_DIR" "$logf" && F[$ds|read]=$WALL
    CMD=(bash -c 'tar -cf - -C "$1" "$2" | zstd -2 -T"$3" -c >/dev/null' floor "$dir" "$base" "$(nproc)")
    run_step "$BENCH_DIR" "$logf" && F[$ds|zstd]=$WALL
    bytes=${R[$ds|size1|cairn]:-$(du_bytes "$p")}
    mkdir -p "$RUN_DIR/$ds"
    CMD=(bash -c 'tar -cf - -C "$1" "$2" | head -c "$3" | dd of="$4" bs=16M iflag=fullblock oflag=direct conv=fsync status=none' \
        floor "$dir" "$base" "$bytes" "$RUN_DIR/$ds/floor.out")
    run_step "$BENCH_DIR" "$logf" && F[$ds|write]=$WALL
    F[$ds|write_mib]=$(awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1048576 }')
    tar -cf "$RUN_DIR/$ds/floor.tar" -C "$dir" "$base"
    warm_cache "$RUN_DIR/$ds/floor.tar"
    mkdir -p "$RUN_DIR/$ds/extract"
    CMD=(tar -xf "$RUN_DIR/$ds/floor.tar" -C "$RUN_DIR/$ds/extract")
    run_step "$BENCH_DIR" "$logf" && F[$ds|extract]=$WALL
}

log "run $RUN_ID: datasets [$DATASETS], tools [$TOOLS], quick=$QUICK; logs in $LOG_DIR"
# Leftovers of an interrupted run (and the layout of older script versions).
deleted=0
for stale in "$RUN_DIR" "$BENCH_DIR/work" "$BENCH_DIR/scratch"; do
    if [[ -e $stale ]]; then
        log "deleting leftovers of an earlier run: $stale"
        rm -rf "$stale"
        deleted=1
    fi
done
# Let the file system forget those deletions before the first tool runs.
if ((deleted)) && [[ $QUICK != 1 ]]; then
    log "waiting ${SETTLE:-300}s after that deletion (SETTLE=0 skips)"
    sleep "${SETTLE:-300}"
fi
trap 'rm -rf "$RUN_DIR"' EXIT
for ds in $DATASETS; do
    DS_DESC[$ds]=$(describe_dataset "$ds")
    for tool in $TOOLS; do
        bench_one "$ds" "$tool"
    done
    measure_floors "$ds"
    log "[$ds] deleting every tool's copies, repositories and restores"
    rm -rf "$RUN_DIR"
done

# ---------------------------------------------------------------- report ---

fmt() { # kind value
    local v=${2:-}
    case $v in "" ) echo "-"; return ;; ERR*|OK|FAIL|-|*differ) echo "$v"; return ;; esac
    case $1 in
        s)   echo "$v" ;;
        rss) awk -v k="$v" 'BEGIN { printf "%.0f MiB", k / 1024 }' ;;
        size) awk -v b="$v" 'BEGIN { printf "%.1f MiB", b / 1048576 }' ;;
        *)   echo "$v" ;;
    esac
}

# Time rows: restic/cairn (a speedup, >1 means cairn is faster).
# RSS and size rows: cairn/restic (<1 means cairn uses less).
ratio() { # kind cairn restic
    local c=${2:-} r=${3:-}
    [[ $c =~ ^[0-9.]+$ && $r =~ ^[0-9.]+$ ]] || { echo "-"; return; }
    case $1 in
        s) awk -v c="$c" -v r="$r" 'BEGIN { if (c > 0) printf "%.2fx", r / c; else print "-" }' ;;
        rss|size) awk -v c="$c" -v r="$r" 'BEGIN { if (r > 0) printf "%.2fx", c / r; else print "-" }' ;;
        *) echo "-" ;;
    esac
}

STEPS=(b1_s b1_rss b2_s b2_rss b3_s b3_rss rs_s rs_rss verify meta size1 size3)
declare -A STEP_NAME=(
    [b1_s]="first backup (s)"          [b1_rss]="first backup peak RSS"
    [b2_s]="unchanged backup (s)"      [b2_rss]="unchanged backup peak RSS"
    [b3_s]="backup after 1% change (s)" [b3_rss]="1% change backup peak RSS"
    [rs_s]="restore latest (s)"        [rs_rss]="restore peak RSS"
    [verify]="restore content check"   [meta]="restore metadata check"
    [size1]="repo size after first backup" [size3]="repo size after all 3 backups"
)

cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
# shellcheck disable=SC1091
os=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-linux}") || os=linux
versions=""
for tool in $TOOLS; do versions+="${versions:+, }$(tool_version "$tool")"; done

{
    echo "# cairn vs restic vs borg ($([[ $QUICK == 1 ]] && echo QUICK || echo full) run $RUN_ID)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) cores (nproc), ${cpu:-unknown CPU}, $mem RAM, $os, kernel $(uname -r)"
    echo "- tools: $versions"
    echo "- settings: restic defaults (compression auto); borg $([[ $BORG_MAJOR -ge 2 ]] && echo repokey-blake2-aes-ocb || echo repokey-blake2), --compression zstd,3; cairn defaults; all encrypted"
    for ds in $DATASETS; do echo "- dataset ${DS_DESC[$ds]}"; done
    echo "- page cache: NOT dropped (not possible here). Each tool gets its own fresh copy of the data followed by one warm-up read, so every tool starts from a warm cache; repos and restores are on the same disk as the data."
    if [[ $COLD_REPO == 1 ]]; then
        echo "- restores: each tool's repository is dropped from the page cache first (posix_fadvise), so every restore reads its repository from the disk"
    else
        echo "- restores: repositories left in the page cache (COLD_REPO=0)"
    fi
    echo "- ratio column: time rows = restic time / cairn time (>1: cairn faster); RSS and size rows = cairn / restic (<1: cairn smaller)"
    echo
    echo "| dataset | step | cairn | restic | borg | cairn vs restic |"
    echo "|---|---|---:|---:|---:|---:|"
    for ds in $DATASETS; do
        for step in "${STEPS[@]}"; do
            kind=${step##*_}
            case $step in size*) kind=size ;; verify|meta) kind=text ;; esac
            row="| $ds | ${STEP_NAME[$step]}"
            for tool in cairn restic borg; do
                if has_tool "$tool"; then row+=" | $(fmt "$kind" "${R[$ds|$step|$tool]:-}")"; else row+=" | n/a"; fi
            done
            row+=" | $(ratio "$kind" "${R[$ds|$step|cairn]:-}" "${R[$ds|$step|restic]:-}") |"
            echo "$row"
        done
    done
    echo
    echo "Floors (same run; seconds): what no tool can beat here. \"read\" reads every byte once"
    echo "(tar into a pipe, one thread); \"read + zstd\" also compresses it with zstd -2 on all"
    echo "$(nproc) cores; \"write\" writes as many bytes as cairn's first backup stored, with O_DIRECT and fsync;"
    echo "\"tar -x\" extracts an uncompressed tar of the data, read from the page cache, into a new"
    echo "directory: creating the files and writing their bytes, which every restore does."
    echo
    echo "| dataset | read | read + zstd -2 | write (MiB) + fsync | cairn first backup | tar -x | cairn restore |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for ds in $DATASETS; do
        echo "| $ds | ${F[$ds|read]:--} | ${F[$ds|zstd]:--} | ${F[$ds|write]:--} (${F[$ds|write_mib]:--}) | $(fmt s "${R[$ds|b1_s|cairn]:-}") | ${F[$ds|extract]:--} | $(fmt s "${R[$ds|rs_s|cairn]:-}") |"
    done
} | tee "$RESULTS"

log "table saved to $RESULTS; per-step tool output in $LOG_DIR"
if ((FAILED)); then
    log "some steps failed or a restore did not verify (ERR/FAIL above)"
    exit 1
fi
