#!/usr/bin/env bash
# Benchmarks of issue 8 (triton sort / netsort), all in one run so the
# figures share the same machine state:
#   1. sort of 1 GB (10,000,000 records), warm page cache, vs `cp` of the
#      same file (the I/O floor);
#   2. external sort of 4 GB with --memory 1GB, vs `cp` of the same file;
#   3. netsort with 4 servers on loopback over 4 x 250 MB, vs the local sort
#      of the same 1 GB;
#   plus peak RSS of each (from /usr/bin/time).
# Before every timed run the outputs are removed and `sync` flushes dirty
# pages (not timed), so no run pays for an earlier run's writeback and no
# run overwrites a file (ext4 flushes a truncated-and-rewritten file on close).
# Usage: crates/sort/bench/run.sh [WORKDIR]   (needs ~10 GB free in WORKDIR)
# Env: RUNS (default 5) for the 1 GB cases, BIG_RUNS (default 3) for 4 GB,
#      TRITON (path to a release binary; default: build one).
# Needs hyperfine and /usr/bin/time: apt-get install -y hyperfine time
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
WORK=${1:-$ROOT/target/sort-bench}
RUNS=${RUNS:-5}
BIG_RUNS=${BIG_RUNS:-3}
if [ -z "${TRITON:-}" ]; then
    (cd "$ROOT" && cargo build --release -p triton)
    TRITON=${CARGO_TARGET_DIR:-$ROOT/target}/release/triton
fi
command -v hyperfine >/dev/null || { echo "needs hyperfine: apt-get install -y hyperfine" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time: apt-get install -y time" >&2; exit 1; }

mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
W=$WORK

echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
echo "== date: $(date -u +%Y-%m-%dT%H:%MZ), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== binary: $TRITON"

median() { # hyperfine JSON, command index -> median seconds
    python3 -c "import json,sys; print('%.3f' % json.load(open(sys.argv[1]))['results'][int(sys.argv[2])]['median'])" "$1" "$2"
}
cpu() { # hyperfine JSON, command index -> mean user+system CPU seconds
    python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][int(sys.argv[2])]; print('%.2f' % (r['user'] + r['system']))" "$1" "$2"
}
peak_mb() { # peak RSS in MB of a command
    /usr/bin/time -f "%M" -o "$W/rss" "$@" >/dev/null 2>&1
    echo $(( $(cat "$W/rss") / 1024 ))
}

echo "== 1. sort 1 GB vs cp (and dd bs=1M: cp and cat copy in the kernel with"
echo "   copy_file_range here, dd copies through user memory as the sort must)"
"$TRITON" gensort "$W/in1g" 1GB --seed 1
cat "$W/in1g" >/dev/null # warm the page cache
hyperfine -N --style basic --warmup 1 --runs "$RUNS" \
    --prepare "rm -f $W/cp.out $W/sort.out $W/dd.out; sync" --export-json "$W/local.json" \
    "cp $W/in1g $W/cp.out" "dd if=$W/in1g of=$W/dd.out bs=1M status=none" "$TRITON sort $W/in1g $W/sort.out"
"$TRITON" valsort "$W/sort.out" | tail -1 # the last command's output (prepare removes all)
rm -f "$W/sort.out" "$W/cp.out" "$W/dd.out"
CP1=$(median "$W/local.json" 0); DD1=$(median "$W/local.json" 1); SORT1=$(median "$W/local.json" 2)
RSS_CP1=$(peak_mb cp "$W/in1g" "$W/cp.out"); rm -f "$W/cp.out"
echo "== phases of one more 1 GB sort (TRITON_SORT_TRACE; thread-time is summed over threads)"
sync; TRITON_SORT_TRACE=1 "$TRITON" sort "$W/in1g" "$W/sort.out" 2>&1 | sed -n 's/^trace: /   /p'; rm -f "$W/sort.out"
RSS_SORT1=$(peak_mb "$TRITON" sort "$W/in1g" "$W/sort.out"); rm -f "$W/sort.out"

echo "== 3. netsort 4 servers x 250 MB vs local sort of the same 1 GB"
rm -f "$W/in1g"
for i in 0 1 2 3; do "$TRITON" gensort "$W/nin$i" 250MB --seed $((10 + i)); done
cat "$W"/nin0 "$W"/nin1 "$W"/nin2 "$W"/nin3 >"$W/nall.in"
PORTS=$(python3 -c "
import socket
s=[socket.socket() for _ in range(4)]
[x.bind(('127.0.0.1',0)) for x in s]
print(' '.join(str(x.getsockname()[1]) for x in s))")
{
    echo "servers:"
    i=0
    for port in $PORTS; do echo "  - {serverId: $i, host: \"127.0.0.1\", port: \"$port\"}"; i=$((i + 1)); done
} >"$W/net.yaml"
cat >"$W/netsort4.sh" <<SH
#!/usr/bin/env bash
# One netsort run: 4 servers at once; fails if any fails. RSS per server in rss.N.
pids=()
for i in 0 1 2 3; do
    /usr/bin/time -f "%M" -o "$W/rss.\$i" "$TRITON" netsort \$i "$W/nin\$i" "$W/nout\$i" "$W/net.yaml" 2>/dev/null &
    pids+=(\$!)
done
rc=0
for p in "\${pids[@]}"; do wait \$p || rc=1; done
exit \$rc
SH
cat "$W"/nin? "$W/nall.in" >/dev/null # warm the page cache
hyperfine -N --style basic --warmup 1 --runs "$RUNS" --export-json "$W/net.json" \
    --prepare "rm -f $W/nout0 $W/nout1 $W/nout2 $W/nout3 $W/nall.out; sync" \
    "bash $W/netsort4.sh" "$TRITON sort $W/nall.in $W/nall.out"
rm -f "$W"/nout? # outputs of removed files only: an overwrite waits for ext4's flush
bash "$W/netsort4.sh" # once more for the check and the peak RSS
cat "$W"/nout0 "$W"/nout1 "$W"/nout2 "$W"/nout3 >"$W/nall.cat"
echo "netsort result: $("$TRITON" valsort "$W/nall.cat" | tail -1);" \
    "checksum in/out: $("$TRITON" valsort "$W/nall.in" | sed -n 's/Checksum: //p')" \
    "$("$TRITON" valsort "$W/nall.cat" | sed -n 's/Checksum: //p')"
NET=$(median "$W/net.json" 0); LOCAL=$(median "$W/net.json" 1)
RSS_NET=$(for i in 0 1 2 3; do echo $(( $(cat "$W/rss.$i") / 1024 )); done | sort -n | tail -1)
rm -f "$W"/nin? "$W"/nout? "$W"/nall.*

echo "== 2. external sort 4 GB with --memory 1GB vs cp"
"$TRITON" gensort "$W/in4g" 4GB --seed 2
cat "$W/in4g" >/dev/null
hyperfine -N --style basic --runs "$BIG_RUNS" \
    --prepare "rm -f $W/cp4.out $W/sort4.out; sync" --export-json "$W/ext.json" \
    "cp $W/in4g $W/cp4.out" "$TRITON sort $W/in4g $W/sort4.out --memory 1GB"
"$TRITON" valsort "$W/sort4.out" | tail -1
rm -f "$W/sort4.out" "$W/cp4.out"
echo "== phases of one more 4 GB sort"
sync; TRITON_SORT_TRACE=1 "$TRITON" sort "$W/in4g" "$W/sort4.out" --memory 1GB 2>&1 | sed -n 's/^trace: \(runs\|merge\)/   \1/p'; rm -f "$W/sort4.out"
CP4=$(median "$W/ext.json" 0); SORT4=$(median "$W/ext.json" 1)
RSS_SORT4=$(peak_mb "$TRITON" sort "$W/in4g" "$W/sort4.out" --memory 1GB)
rm -f "$W/in4g" "$W/sort4.out"

ratio() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
echo
echo "== summary (medians; peak RSS in MB)"
echo "| case | median wall | floor/peer median wall | wall ratio | CPU s (user+sys) vs peer | peak RSS |"
echo "|---|---|---|---|---|---|"
echo "| sort 1 GB (in memory) | ${SORT1} s | cp ${CP1} s | $(ratio "$SORT1" "$CP1")x | $(cpu "$W/local.json" 2) vs $(cpu "$W/local.json" 0) | ${RSS_SORT1} MB (cp ${RSS_CP1} MB) |"
echo "| (same sort vs dd bs=1M) | ${SORT1} s | dd ${DD1} s | $(ratio "$SORT1" "$DD1")x | $(cpu "$W/local.json" 2) vs $(cpu "$W/local.json" 1) | |"
echo "| sort 4 GB, --memory 1GB | ${SORT4} s | cp ${CP4} s | $(ratio "$SORT4" "$CP4")x | $(cpu "$W/ext.json" 1) vs $(cpu "$W/ext.json" 0) | ${RSS_SORT4} MB |"
echo "| netsort 4 x 250 MB | ${NET} s | local sort 1 GB ${LOCAL} s | $(ratio "$NET" "$LOCAL")x | $(cpu "$W/net.json" 0) vs $(cpu "$W/net.json" 1) | ${RSS_NET} MB per server (max) |"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
