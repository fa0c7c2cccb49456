#!/usr/bin/env bash
# HTTP figures for BENCHMARKS.md ("HTTP: chargers API and overview page"), issue 4:
#
#   for each size in SIZES (connectors per site; the simulator gives every charger one
#   connector, so `vetric demo --chargers N` is N connectors):
#     - starts `vetric demo` in a temp dir on a free loopback port and waits until the chargers
#       API lists all N connectors (the first poll has been stored);
#     - logs in once as the demo site's manager (POST /api/v1/auth/login: the JSON `token` for
#       the API, the `Set-Cookie` session for the page);
#     - runs wrk (a separate process) against GET /api/v1/sites/SLUG/chargers (bearer) and
#       GET /sites/SLUG (cookie): WARMUP s discarded, then DURATION s measured;
#     - measures a first load of the overview: the HTML plus every /static/ file it references,
#       as served (Content-Encoding, if any) and what `gzip -6` would make of each, plus the
#       first `cards` event of the SSE stream the page opens;
#   then prints a markdown table.
#
# Usage (from the workspace root):
#   bench/http.sh                      # builds `cargo build --release -p vetric` first
#   NO_BUILD=1 bench/http.sh           # use the binary already built
# Knobs (env): SIZES="5 1000" THREADS=2 CONNS=16 DURATION=15 WARMUP=3 PORT=(free port)
#              CARGO_TARGET_DIR=/var/tmp/vetric-target
#
# Loopback only; every wrk run is bounded by DURATION; the demo it starts is stopped by PID at
# the end (trap). Needs wrk, curl, jq, gzip.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/vetric-target}
VETRIC=$CARGO_TARGET_DIR/release/vetric
SIZES=${SIZES:-5 1000}
THREADS=${THREADS:-2}
CONNS=${CONNS:-16}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
SLUG=jardim-palmeiras

for tool in wrk curl jq gzip; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y $tool)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/vetric-http.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

note() { printf '%s\n' "$*" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

if [[ -z ${NO_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release -p vetric)
fi
[[ -x $VETRIC ]] || { echo "missing $VETRIC: build it first" >&2; exit 1; }

# run_wrk LABEL URL HEADER: warm-up, then the measured run; prints "rps p50 p99 non2xx".
run_wrk() {
    local label=$1 url=$2 hdr=$3 out=$WORK/wrk.$RANDOM
    wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -H "$hdr" "$url" >/dev/null
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -H "$hdr" "$url" >"$out"
    sed 's/^/    /' "$out" >&2
    local rps p50 p99 bad
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(awk '$1 == "50%" {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    bad=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    note "  $label: $rps req/s, p50 $p50, p99 $p99, non-2xx ${bad:-0}   load $(load)"
    echo "$rps $p50 $p99 ${bad:-0}"
}

# first_load BASE COOKIE: bytes of a first visit to the overview. Prints
# "html_raw html_gz assets_raw assets_gz wire_total headers encoding sse_event".
first_load() {
    local base=$1 cookie=$2 dir=$WORK/first
    rm -rf "$dir" && mkdir -p "$dir"
    # As a browser asks: it announces gzip/br; whatever the server does with that is counted.
    local ae='Accept-Encoding: gzip, deflate, br'
    local wire=0 hdrs=0 raw_assets=0 gz_assets=0 enc
    read -r size hsize < <(curl -sS -H "$ae" -H "Cookie: $cookie" -D "$dir/page.h" \
        -o "$dir/page.body" -w '%{size_download} %{size_header}\n' "$base/sites/$SLUG")
    enc=$(awk 'tolower($1) == "content-encoding:" {print $2}' "$dir/page.h" | tr -d '\r')
    wire=$((wire + size)); hdrs=$((hdrs + hsize))
    # The HTML as text (decoded if the server compressed it), to find what it references.
    curl -sS --compressed -H "Cookie: $cookie" -o "$dir/page.html" "$base/sites/$SLUG"
    local html_raw html_gz
    html_raw=$(stat -c %s "$dir/page.html")
    html_gz=$(gzip -6 -c "$dir/page.html" | wc -c)
    local refs
    refs=$(grep -oE '(href|src)="/static/[^"]+"' "$dir/page.html" | sed -E 's/^[a-z]+="//; s/"$//' | sort -u)
    local ref
    for ref in $refs; do
        read -r size hsize < <(curl -sS -H "$ae" -o "$dir/asset" \
            -w '%{size_download} %{size_header}\n' "$base$ref")
        wire=$((wire + size)); hdrs=$((hdrs + hsize))
        curl -sS --compressed -o "$dir/asset.raw" "$base$ref"
        raw_assets=$((raw_assets + $(stat -c %s "$dir/asset.raw")))
        gz_assets=$((gz_assets + $(gzip -6 -c "$dir/asset.raw" | wc -c)))
        note "    $ref: $(stat -c %s "$dir/asset.raw") bytes raw, $size on the wire"
    done
    # The page opens /sites/SLUG/events at once, and the stream's first event is the cards
    # fragment again: part of what a first visit transfers. Two seconds catch it.
    curl -sS -N --max-time 2 -H "$ae" -H "Cookie: $cookie" -o "$dir/sse" \
        "$base/sites/$SLUG/events" 2>/dev/null || true
    local sse
    sse=$(LC_ALL=C awk 'BEGIN {RS = ""} /(^|\n)event: cards/ {print length($0) + 2; exit}' "$dir/sse")
    echo "$html_raw $html_gz $raw_assets $gz_assets $wire $hdrs ${enc:-none} ${sse:-0}"
}

ROWS=()
BYTES=()
note "vetric http bench: $(date -u +%FT%TZ), nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -h | awk '/^Mem:/ {print $2}') RAM, $(rustc --version 2>/dev/null || echo rustc ?), wrk -t$THREADS -c$CONNS -d${DURATION}s (after ${WARMUP}s warm-up)"
for n in $SIZES; do
    port=${PORT:-$(free_port)}
    base=http://127.0.0.1:$port
    dir=$WORK/demo-$n
    note "## $n connectors (load $(load))"
    "$VETRIC" demo --listen "127.0.0.1:$port" --data-dir "$dir" --chargers "$n" \
        >"$WORK/demo-$n.out" 2>"$WORK/demo-$n.err" &
    demo=$!
    PIDS+=("$demo")
    deadline=$((SECONDS + 180))
    until grep -q '^manager: ' "$WORK/demo-$n.out" 2>/dev/null; do
        kill -0 "$demo" 2>/dev/null || { cat "$WORK/demo-$n.err" >&2; exit 1; }
        ((SECONDS < deadline)) || { echo "demo did not print its logins" >&2; exit 1; }
        sleep 0.2
    done
    read -r _ email password < <(grep -m1 '^manager: ' "$WORK/demo-$n.out")
    curl -sS -D "$WORK/login.h" -o "$WORK/login.json" -H 'Content-Type: application/json' \
        -d "$(jq -n --arg e "$email" --arg p "$password" '{email: $e, password: $p}')" \
        "$base/api/v1/auth/login"
    token=$(jq -r .token "$WORK/login.json")
    cookie=$(awk 'tolower($1) == "set-cookie:" {print $2}' "$WORK/login.h" | tr -d '\r' | sed 's/;$//')
    [[ -n $token && $token != null && -n $cookie ]] || { echo "login failed" >&2; cat "$WORK/login.json" >&2; exit 1; }
    # The first poll stored: the API lists every connector.
    until [[ $(curl -sS -H "Authorization: Bearer $token" "$base/api/v1/sites/$SLUG/chargers" | jq '.data | length') == "$n" ]]; do
        ((SECONDS < deadline)) || { echo "connectors never reached $n" >&2; exit 1; }
        sleep 0.5
    done
    api_bytes=$(curl -sS -H "Authorization: Bearer $token" -o /dev/null -w '%{size_download}' "$base/api/v1/sites/$SLUG/chargers")
    note "  ready: $n connectors listed; API body $api_bytes bytes"
    # Let the simulator start sessions, so cards carry residents, timers and energy.
    sleep 5
    read -r a_rps a_p50 a_p99 a_bad < <(run_wrk "API $n" "$base/api/v1/sites/$SLUG/chargers" "Authorization: Bearer $token")
    read -r p_rps p_p50 p_p99 p_bad < <(run_wrk "page $n" "$base/sites/$SLUG" "Cookie: $cookie")
    read -r html_raw html_gz assets_raw assets_gz wire hdrs enc sse < <(first_load "$base" "$cookie")
    open=$(curl -sS -H "Authorization: Bearer $token" "$base/api/v1/sites/$SLUG/chargers" | jq '[.data[] | select(.session != null)] | length')
    ROWS+=("| $n | chargers API | $a_rps | $a_p50 | $a_p99 | $a_bad | $api_bytes |")
    ROWS+=("| $n | overview page | $p_rps | $p_p50 | $p_p99 | $p_bad | $html_raw |")
    BYTES+=("| $n | $open | $html_raw | $assets_raw | $((html_raw + assets_raw)) | $wire (+$hdrs headers) | $enc | $((html_gz + assets_gz)) | $sse |")
    stop "$demo"
done

echo
echo "| connectors | endpoint | req/s | p50 | p99 | non-2xx | body bytes |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "| connectors | open sessions | overview HTML | CSS + JS | raw total | size_download (curl, summed) | Content-Encoding | if gzip -6 | first SSE event |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${BYTES[@]}"
echo
echo "load average at the end: $(load)"
