#!/usr/bin/env bash
# SurfStore sync benchmark (docs/BENCHMARKS.md, "SurfStore sync"):
#   1. initial sync of 200 MB in 2,000 files into an empty cluster,
#   2. a no-change re-sync of 10,000 files,
# each side by side in the same run with rsync to an rsync daemon on
# 127.0.0.1. Also: bytes re-uploaded after inserting 100 bytes in the middle
# of a 20 MB file, fixed-size blocks vs --chunking cdc.
#
# Usage: crates/surfsync/bench/run.sh [TRITON_BIN] [ROUNDS]
# Needs: rsync (apt-get install -y rsync), python3 (seeded test data).
set -euo pipefail

TRITON=${1:-${CARGO_TARGET_DIR:-target}/release/triton}
ROUNDS=${2:-3}
BLOCKSIZE=${BLOCKSIZE:-65536}
JOBS=${JOBS:-128}   # blocks in flight (triton sync --jobs)
TRITON=$(realpath "$TRITON")
WORK=$(mktemp -d /tmp/surfbench.XXXXXX)
PIDS=()
stop_all() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
}
cleanup() {
  stop_all
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }

# Seeded data: FILES files of SIZE bytes each in DIR.
gen() { # DIR FILES SIZE SEED
  python3 - "$@" <<'PY'
import os, random, sys
d, n, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
os.makedirs(d, exist_ok=True)
r = random.Random(seed)
for i in range(n):
    with open(os.path.join(d, f"file{i:05d}.bin"), "wb") as f:
        f.write(r.randbytes(size))
PY
}

start_cluster() { # NAME -> sets CFG; starts 3 metadata nodes + 2 block stores
  local dir=$WORK/$1
  mkdir -p "$dir"
  local cfg=$dir/config.toml
  local b1 b2
  b1=127.0.0.1:$(free_port); b2=127.0.0.1:$(free_port)
  {
    echo "block_stores = [\"$b1\", \"$b2\"]"
    echo "data_dir = \"$dir/data\""
    for id in 0 1 2; do
      echo "[[nodes]]"; echo "id = $id"; echo "addr = \"127.0.0.1:$(free_port)\""
    done
  } > "$cfg"
  for b in "$b1" "$b2"; do
    "$TRITON" blockstore --listen "$b" --dir "$dir/blocks-${b##*:}" >/dev/null 2>>"$dir/log" &
    PIDS+=($!)
  done
  for id in 0 1 2; do
    # A fresh cluster: its first start founds it (--new-cluster).
    RUST_LOG=warn "$TRITON" server --config "$cfg" --id $id --new-cluster >/dev/null 2>>"$dir/log" &
    PIDS+=($!)
  done
  # Ready once a sync of an empty directory succeeds (a leader exists).
  mkdir -p "$dir/probe"
  for _ in $(seq 100); do
    if "$TRITON" sync --config "$cfg" --deadline 1 "$dir/probe" "$BLOCKSIZE" >/dev/null 2>&1; then
      CFG=$cfg; return
    fi
    sleep 0.2
  done
  echo "cluster did not start; log:" >&2; tail -20 "$dir/log" >&2; exit 1
}

start_rsyncd() { # NAME -> sets PORT
  local dir=$WORK/$1
  mkdir -p "$dir/dest"
  local port; port=$(free_port)
  cat > "$dir/rsyncd.conf" <<CONF
pid file = $dir/rsyncd.pid
use chroot = no
uid = $(id -u)
gid = $(id -g)
[bench]
  path = $dir/dest
  read only = no
CONF
  rsync --daemon --no-detach --port "$port" --config "$dir/rsyncd.conf" >/dev/null 2>>"$dir/rsync.log" &
  PIDS+=($!)
  for _ in $(seq 50); do
    rsync "rsync://127.0.0.1:$port/" >/dev/null 2>&1 && { PORT=$port; return; }
    sleep 0.1
  done
  echo "rsyncd did not start" >&2; exit 1
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(lscpu | grep 'Model name' | sed 's/ \+/ /g')"
echo "# triton $TRITON, BLOCKSIZE $BLOCKSIZE, --jobs $JOBS, rounds $ROUNDS"
gen "$WORK/src200" 2000 104857 1     # 2,000 files, 200 MB
gen "$WORK/src10k" 10000 4096 2      # 10,000 files, 41 MB
echo "round,case,triton_s,rsync_s"
for round in $(seq "$ROUNDS"); do
  # 1. Initial sync of 200 MB / 2,000 files into an empty cluster / daemon.
  start_cluster "c$round"; cfg=$CFG
  start_rsyncd "r$round"; port=$PORT
  client=$WORK/client$round; cp -r "$WORK/src200" "$client"
  t0=$(now); "$TRITON" sync --config "$cfg" --jobs "$JOBS" "$client" "$BLOCKSIZE" >/dev/null 2>"$WORK/sync.err"; t1=$(now)
  r0=$(now); rsync -a "$WORK/src200/" "rsync://127.0.0.1:$port/bench/" ; r1=$(now)
  echo "$round,initial-200MB-2000files,$(elapsed "$t0" "$t1"),$(elapsed "$r0" "$r1")"

  # 2. No-change re-sync of 10,000 files (after an initial sync of them).
  client10k=$WORK/client10k-$round; cp -r "$WORK/src10k" "$client10k"
  "$TRITON" sync --config "$cfg" "$client10k" "$BLOCKSIZE" >/dev/null 2>&1
  rsync -a "$WORK/src10k/" "rsync://127.0.0.1:$port/bench/k10/"
  sleep 2.5  # past the racy-mtime window, as for any file not written just now
  "$TRITON" sync --config "$cfg" "$client10k" "$BLOCKSIZE" >/dev/null 2>&1  # records the stat cache
  t0=$(now); "$TRITON" sync --config "$cfg" "$client10k" "$BLOCKSIZE" >"$WORK/resync.out" 2>&1; t1=$(now)
  r0=$(now); rsync -a "$WORK/src10k/" "rsync://127.0.0.1:$port/bench/k10/"; r1=$(now)
  echo "$round,resync-nochange-10000files,$(elapsed "$t0" "$t1"),$(elapsed "$r0" "$r1")"
  grep -q "0 up, 0 down" "$WORK/resync.out" || { echo "re-sync moved files:"; cat "$WORK/resync.out"; }

  stop_all
  rm -rf "$WORK/c$round" "$WORK/r$round" "$client" "$client10k"
done

# 3. CDC vs fixed: 100 bytes inserted in the middle of a 20 MB file.
echo "chunking,blocksize,bytes_uploaded_after_insert"
for mode in fixed cdc; do
  start_cluster "cdc-$mode"; cfg=$CFG
  d=$WORK/cdc-$mode/client; mkdir -p "$d"
  gen "$WORK/cdc-$mode/gen" 1 20971520 3; mv "$WORK/cdc-$mode/gen/file00000.bin" "$d/big.bin"
  "$TRITON" sync --config "$cfg" --jobs "$JOBS" --chunking "$mode" "$d" 4096 >/dev/null 2>&1
  python3 - "$d/big.bin" <<'PY'
import sys, random
p = sys.argv[1]
data = open(p, "rb").read()
mid = len(data) // 2
open(p, "wb").write(data[:mid] + random.Random(4).randbytes(100) + data[mid:])
PY
  out=$("$TRITON" sync --config "$cfg" --chunking "$mode" "$d" 4096 2>/dev/null)
  echo "$mode,4096,$(echo "$out" | sed -n 's/.*; \(.*\) uploaded,.*/\1/p')"
  stop_all
done
