#!/usr/bin/env bash
# File-server benchmark: write and read throughput and p50/p99 latency of
# 1 KB files with 50 concurrent connections against a 3-node Triton cluster
# on loopback, and against one memcached (no replication) as the reference
# for the cost of replication. Rounds alternate Triton / memcached so both
# see the same machine load; the median round is quoted in docs/BENCHMARKS.md.
#
# Usage: crates/fileserver/bench/run.sh [ROUNDS] [OPS_PER_CONNECTION]
# Needs: a release build of triton (TRITON=path, default target/release/triton)
# and memcached on PATH (apt-get install -y memcached).
set -euo pipefail

ROUNDS=${1:-3}
OPS=${2:-200}
CONNS=50
SIZE=1024
FILES=1000
TRITON=${TRITON:-target/release/triton}
BASE=${BASE_PORT:-17300}

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

{
    for i in 0 1 2; do
        printf '[[nodes]]\nid = %d\naddr = "127.0.0.1:%d"\nfile_addr = "127.0.0.1:%d"\n\n' \
            "$i" $((BASE + i)) $((BASE + 10 + i))
    done
} >"$work/cluster.toml"
for i in 0 1 2; do
    "$TRITON" server --config "$work/cluster.toml" --id "$i" --data-dir "$work/node-$i" --new-cluster \
        2>"$work/node-$i.log" &
    pids+=($!)
done
# memcached refuses to run as root without -u.
mc_user=()
if [ "$(id -u)" = 0 ]; then mc_user=(-u root); fi
memcached "${mc_user[@]}" -p $((BASE + 20)) -U 0 -t 2 -l 127.0.0.1 &
pids+=($!)

endpoints="127.0.0.1:$((BASE + 10)),127.0.0.1:$((BASE + 11)),127.0.0.1:$((BASE + 12))"
# Wait until the cluster commits a write.
for _ in $(seq 1 100); do
    if echo warm | "$TRITON" files --endpoints "$endpoints" write warm-up - >/dev/null 2>&1; then break; fi
    sleep 0.2
done

echo "machine: $(nproc) cores, $(lscpu | grep 'Model name' | sed 's/  */ /g')"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "load: $CONNS connections x $OPS ops per phase, $SIZE-byte files, $FILES files"
for r in $(seq 1 "$ROUNDS"); do
    echo "== round $r: triton (3 nodes, replicated)"
    "$TRITON" files --endpoints "$endpoints" bench --connections $CONNS --ops "$OPS" \
        --size $SIZE --files $FILES --seed "$r"
    echo "== round $r: memcached (1 node, -t 2)"
    "$TRITON" files --endpoints "127.0.0.1:$((BASE + 20))" bench --protocol memcached \
        --connections $CONNS --ops "$OPS" --size $SIZE --files $FILES --seed "$r"
done
