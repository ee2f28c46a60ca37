#!/usr/bin/env bash
# Benchmarks `triton http` against Debian's nginx in one run, same files,
# same wrk settings: a 1 KiB and a 1 MiB file over 64 keep-alive
# connections. Prints a Markdown table of medians over ROUNDS runs.
#
#   crates/http/bench/run.sh            # 3 rounds of 10 s per server and file
#   ROUNDS=9 DURATION=5s crates/http/bench/run.sh   # more, shorter pairs
#   ROUNDS=1 DURATION=5s crates/http/bench/run.sh
#   TRITON=target/release/triton crates/http/bench/run.sh   # no build
#
# Needs: apt-get install -y nginx wrk. Only loopback traffic; every server
# it starts is stopped on exit. On a 2-core machine wrk and the server
# compete for the same cores, for both servers alike.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target-http}

for tool in wrk nginx; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y nginx wrk" >&2; exit 1; }
done

# TRITON=/path/to/triton skips the build (e.g. to bench an existing binary).
if [ -z "${TRITON:-}" ]; then
    cargo build --quiet --release -p triton --manifest-path "$REPO/Cargo.toml"
    TRITON=$CARGO_TARGET_DIR/release/triton
fi

WORK=$(mktemp -d /tmp/triton-http-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

DOCROOT=$WORK/docroot
mkdir -p "$DOCROOT"
head -c 1024 /dev/zero | tr '\0' 'a' >"$DOCROOT/small.html"
head -c 1048576 /dev/zero | tr '\0' 'b' >"$DOCROOT/large.bin"
chmod -R a+rX "$DOCROOT"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listening on port $1" >&2
    exit 1
}

TRITON_PORT=$(free_port)
"$TRITON" http --bind 127.0.0.1 --port "$TRITON_PORT" --docroot "$DOCROOT" 2>"$WORK/triton.log" &
TRITON_PID=$!
PIDS+=($TRITON_PID)

NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx"
# Debian's defaults that matter here (worker_processes auto, sendfile,
# tcp_nopush), no access log, and no per-connection request cap (triton
# has none either; nginx's default of 1000 would force reconnects).
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    types { text/html html; }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $DOCROOT;
    }
}
CONF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
wait_port "$TRITON_PORT"
wait_port "$NGINX_PORT"
NGINX_PIDS="$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"
TICKS_PER_SEC=$(getconf CLK_TCK)

# cpu_ticks PID... -> user+system clock ticks used so far by those processes.
cpu_ticks() {
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$total"
}

# Sanity: both serve the same bytes.
for port in "$TRITON_PORT" "$NGINX_PORT"; do
    for file in small.html large.bin; do
        curl -sf "http://127.0.0.1:$port/$file" | cmp - "$DOCROOT/$file"
    done
done

# run_wrk PORT FILE PIDS -> "req_per_sec p50_ms p99_ms server_cpu_us_per_request"
# (server CPU: user+system time of the server's processes during the run,
# divided by requests served; less sensitive to other load than req/s).
run_wrk() {
    local before after
    before=$(cpu_ticks $3)
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$1/$2" >"$WORK/wrk.out"
    after=$(cpu_ticks $3)
    if grep -q 'Non-2xx\|Socket errors' "$WORK/wrk.out"; then
        echo "errors against port $1:" >&2
        cat "$WORK/wrk.out" >&2
    fi
    awk -v ticks=$((after - before)) -v hz="$TICKS_PER_SEC" '
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
        /Requests\/sec/ { rps = $2 }
        / requests in / { requests = $1 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        END { printf "%s %.3f %.3f %.1f\n", rps, p50, p99, ticks * 1e6 / hz / requests }
    ' "$WORK/wrk.out"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $ROUNDS round(s), servers alternating (order flips each round)"
echo
echo "| file | server | req/s (median) | ratio vs nginx | paired ratio (median) | p50 ms | p99 ms | server CPU µs/req | req/s all rounds |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for file in small.html large.bin; do
    : >"$WORK/triton.rows"
    : >"$WORK/nginx.rows"
    for round in $(seq 1 "$ROUNDS"); do
        # Alternate who goes first so neither always gets the warmer slot.
        if [ $((round % 2)) -eq 1 ]; then
            run_wrk "$TRITON_PORT" "$file" "$TRITON_PID" >>"$WORK/triton.rows"
            run_wrk "$NGINX_PORT" "$file" "$NGINX_PIDS" >>"$WORK/nginx.rows"
        else
            run_wrk "$NGINX_PORT" "$file" "$NGINX_PIDS" >>"$WORK/nginx.rows"
            run_wrk "$TRITON_PORT" "$file" "$TRITON_PID" >>"$WORK/triton.rows"
        fi
    done
    nginx_rps=$(cut -d' ' -f1 "$WORK/nginx.rows" | median)
    # Ratio of each triton run to the nginx run right after it: runs close
    # in time see similar background load, so the paired median is the
    # steadier figure when other work shares the machine.
    paired=$(paste -d' ' <(cut -d' ' -f1 "$WORK/triton.rows") <(cut -d' ' -f1 "$WORK/nginx.rows") |
        awk '{ printf "%.3f\n", $1 / $2 }' | median)
    for server in triton nginx; do
        rows=$WORK/$server.rows
        rps=$(cut -d' ' -f1 "$rows" | median)
        p50=$(cut -d' ' -f2 "$rows" | median)
        p99=$(cut -d' ' -f3 "$rows" | median)
        cpu=$(cut -d' ' -f4 "$rows" | median)
        all=$(cut -d' ' -f1 "$rows" | tr '\n' ' ' | sed 's/ $//')
        ratio=$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN { printf "%.2f", a / b }')
        if [ "$server" = nginx ]; then pair=1.00; else pair=$(printf '%.2f' "$paired"); fi
        echo "| $file | $server | $rps | $ratio | $pair | $p50 | $p99 | $cpu | $all |"
    done
done
