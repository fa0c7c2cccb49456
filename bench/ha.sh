#!/usr/bin/env bash
# Availability figures for BENCHMARKS.md ("Availability: vendor recovery, leader takeover,
# vendor calls, dashboard during an outage"), issue 7. The release binary, a CVE-Pro simulator
# (`vetric sim cvepro`, 5 chargers, speed 60) and PostgreSQL, loopback only:
#
#   recovery  one instance; a 502 outage of OUTAGE_S s (simulator `/__sim/faults`), then heal:
#             seconds from the heal until the chargers API says `fresh` with an `as_of` after
#             the heal; vendor calls during the outage. At a 10 s and a 1 s poll, RUNS each.
#   takeover  two instances; SIGKILL the leader (right after a quiet moment at the simulator, so
#             no call of the dead one is in flight): seconds until the survivor's /health says
#             `leader`, and until the simulator counts the next vendor call (the new leader's
#             first). The killed one is restarted (a follower) and the next run kills the new
#             leader. At a 10 s and a 1 s poll, TAKEOVER_RUNS each. (The call count is taken
#             0.1 s after the kill, so a request the dead leader sent just before it is not
#             counted; the survivor waits a grace of two leader ticks, >= 2 s, before polling.)
#   calls     1, then 2, then 3 instances at the default 10 s poll: vendor calls per minute
#             counted at the simulator over CALLS_WINDOW_S s each (only the leader polls, so
#             all three must be equal), and the sum of vetric_ingest_leader.
#   wrk       one instance: GET /api/v1/sites/SLUG/chargers (bearer) and GET /sites/SLUG
#             (cookie) with wrk -tTHREADS -cCONNS -dWRK_S s (after 2 s of warm-up), healthy and
#             then during a 502 outage (data stale, breaker open): req/s, p50, p99, non-2xx.
#
# Usage (from the workspace root, after `cargo build --release -p vetric`):
#   bench/ha.sh [recovery] [takeover] [calls] [wrk]        # none = all four (about 9 min)
# Knobs (env): PG_URL=postgres://postgres@127.0.0.1:5432 (database vetric_ha, dropped and
#   created per phase, dropped at the end) OUTAGE_S=30 RUNS=2 TAKEOVER_RUNS=3 CALLS_WINDOW_S=60
#   WRK_S=10 THREADS=2 CONNS=16 DASH_ORDER="healthy outage" (wrk: the order of the two
#   states; "outage healthy" heals first) CARGO_TARGET_DIR=/var/tmp/vetric-target
# Every process it starts is stopped by PID at the end (trap). Needs curl, jq, wrk, psql.
set -euo pipefail

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/vetric-target}
VETRIC=${VETRIC:-$CARGO_TARGET_DIR/release/vetric}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
DB=vetric_ha
OUTAGE_S=${OUTAGE_S:-30}
RUNS=${RUNS:-2}
TAKEOVER_RUNS=${TAKEOVER_RUNS:-3}
CALLS_WINDOW_S=${CALLS_WINDOW_S:-60}
WRK_S=${WRK_S:-10}
THREADS=${THREADS:-2}
CONNS=${CONNS:-16}
SLUG=jardim-palmeiras

for tool in curl jq wrk psql; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
[[ -x $VETRIC ]] || { echo "missing $VETRIC: cargo build --release -p vetric" >&2; exit 1; }

WORK=$(mktemp -d /tmp/vetric-ha.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

note() { printf '%s\n' "$*" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
now_ms() { date +%s%3N; }
secs() { awk -v m="$1" 'BEGIN {printf "%.2f", m / 1000}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # SECONDS COMMAND...
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

SIM_PORT=
SIM=
sim_start() {
    SIM_PORT=$(free_port)
    "$VETRIC" sim cvepro --listen "127.0.0.1:$SIM_PORT" --chargers 5 --speed 60 >"$WORK/sim.out" 2>&1 &
    SIM=$!
    PIDS+=("$SIM")
    wait_for 30 curl -fsS -o /dev/null "http://127.0.0.1:$SIM_PORT/__sim/calls"
}
sim() { curl -fsS "$@"; }
calls() { sim "http://127.0.0.1:$SIM_PORT/__sim/calls" | jq .total; }
outage() { sim -X POST "http://127.0.0.1:$SIM_PORT/__sim/faults" -H 'content-type: application/json' -d '{"kind":"outage","status":502}' >/dev/null; }
heal() { sim -X DELETE "http://127.0.0.1:$SIM_PORT/__sim/faults" >/dev/null; }

# fresh_db POLL: a new database and a config polling the simulator every POLL s.
CONFIG=$WORK/vetric.toml
TOKEN=
COOKIE=
fresh_db() {
    psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
    cat >"$CONFIG" <<EOF
database_url = "$PG_URL/$DB"

[[sites]]
slug = "$SLUG"
name = "Condomínio Jardim Palmeiras"

[sites.cvepro]
base_url = "http://127.0.0.1:$SIM_PORT"
api_key = "sim-api-key"
email = "operador@condominio.example"
password = "simulador"
poll_interval_s = $1
EOF
    "$VETRIC" migrate --config "$CONFIG" >/dev/null 2>&1
    printf '%s\n' bench-password-123 | "$VETRIC" user add --config "$CONFIG" --email bench@example.com --role admin >/dev/null 2>&1
}
# serve PORT -> PID in $STARTED
serve() {
    VETRIC_LISTEN=127.0.0.1:$1 "$VETRIC" serve --config "$CONFIG" >"$WORK/serve-$1.out" 2>"$WORK/serve-$1.err" &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_for 60 curl -fsS -o /dev/null "http://127.0.0.1:$1/health/ready"
}
role() {
    curl -fsS "http://127.0.0.1:$1/health" 2>/dev/null |
        jq -r --arg k "ingest:$SLUG" '[.checks[$k][]? | select(.observedUnit == "role") | .observedValue][0] // "none"' 2>/dev/null ||
        echo down
}
login() { # PORT
    curl -fsS -D "$WORK/login.h" -o "$WORK/login.json" -H 'Content-Type: application/json' \
        -d '{"email":"bench@example.com","password":"bench-password-123"}' "http://127.0.0.1:$1/api/v1/auth/login"
    TOKEN=$(jq -r .token "$WORK/login.json")
    COOKIE=$(awk 'tolower($1) == "set-cookie:" {print $2}' "$WORK/login.h" | tr -d '\r' | sed 's/;$//' | head -1)
}
freshness() { # PORT -> "state as_of"
    curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$1/api/v1/sites/$SLUG/chargers" |
        jq -r '"\(.freshness.state) \(.freshness.as_of) \(.data | length)"'
}
is_fresh() { [[ $(freshness "$1") == fresh\ * ]]; }
# Waits until the simulator has seen no call for QUIET ms (between two cycles).
quiet() {
    local q=$1 last cur since
    last=$(calls)
    since=$(now_ms)
    while true; do
        sleep 0.02
        cur=$(calls)
        if [[ $cur != "$last" ]]; then last=$cur; since=$(now_ms); continue; fi
        (($(now_ms) - since >= q)) && return 0
    done
}

ROWS=()

# ------------------------------------------------------------------------------------------
recovery() {
    local poll run
    for poll in 10 1; do
        sim_start
        fresh_db "$poll"
        local port
        port=$(free_port)
        serve "$port"
        local pid=$STARTED
        login "$port"
        wait_for 60 is_fresh "$port"
        for ((run = 1; run <= RUNS; run++)); do
            sleep 2
            local c0 c1 heal_ms t state n
            c0=$(calls)
            outage
            sleep "$OUTAGE_S"
            read -r state _ n < <(freshness "$port")
            c1=$(calls)
            heal
            heal_ms=$(now_ms)
            fresh_after_heal() {
                local s a
                read -r s a _ < <(freshness "$port")
                [[ $s == fresh && $a != null ]] && (($(date -d "$a" +%s%3N) >= heal_ms))
            }
            wait_for 120 fresh_after_heal
            t=$(($(now_ms) - heal_ms))
            note "recovery poll ${poll}s run $run: ${OUTAGE_S}s outage (${state} at its end, $n connectors listed, $((c1 - c0)) vendor calls during it) -> fresh $(secs "$t") s after the heal   load $(load)"
            ROWS+=("| vendor recovery → fresh data | poll ${poll} s, ${OUTAGE_S} s 502 outage (run $run) | **$(secs "$t") s** | $((c1 - c0)) vendor calls during the outage; API said \`$state\` with $n connectors at its end |")
            wait_for 60 is_fresh "$port"
        done
        stop "$pid"
        stop "$SIM"
    done
}

# ------------------------------------------------------------------------------------------
takeover() {
    local poll run
    for poll in 10 1; do
        sim_start
        fresh_db "$poll"
        local pa pb
        pa=$(free_port)
        pb=$(free_port)
        declare -A PID
        serve "$pa"
        PID[$pa]=$STARTED
        serve "$pb"
        PID[$pb]=$STARTED
        for ((run = 1; run <= TAKEOVER_RUNS; run++)); do
            one_leader() { [[ "$(role "$pa") $(role "$pb")" =~ ^(leader\ follower|follower\ leader)$ ]]; }
            wait_for 60 one_leader
            local lp sp
            if [[ $(role "$pa") == leader ]]; then lp=$pa sp=$pb; else lp=$pb sp=$pa; fi
            # Let it poll a few times, then kill it between two cycles.
            sleep $((poll * 2 + 1))
            quiet $((poll >= 10 ? 1000 : 300))
            local c0 k t_lead='' t_call=''
            k=$(now_ms)
            kill -9 "${PID[$lp]}"
            wait "${PID[$lp]}" 2>/dev/null || true
            # A request the leader wrote just before dying may still reach the simulator; the
            # new leader cannot call within 0.1 s (it waits a grace of two ticks after taking
            # the lock), so the count is taken again then.
            sleep 0.1
            c0=$(calls)
            while [[ -z $t_lead || -z $t_call ]]; do
                if [[ -z $t_call ]] && (($(calls) > c0)); then t_call=$(($(now_ms) - k)); fi
                if [[ -z $t_lead && $(role "$sp") == leader ]]; then t_lead=$(($(now_ms) - k)); fi
                (($(now_ms) - k < 120000)) || { note "no takeover within 120 s"; exit 1; }
                sleep 0.02
            done
            note "takeover poll ${poll}s run $run: leader at $(secs "$t_lead") s, first vendor call at $(secs "$t_call") s   load $(load)"
            ROWS+=("| leader SIGKILL → takeover | poll ${poll} s, 2 instances (run $run) | **$(secs "$t_call") s** to the first vendor call | survivor's /health said \`leader\` after $(secs "$t_lead") s |")
            serve "$lp"
            PID[$lp]=$STARTED
        done
        stop "${PID[$pa]}"
        stop "${PID[$pb]}"
        unset PID
        stop "$SIM"
    done
}

# ------------------------------------------------------------------------------------------
calls_per_minute() {
    sim_start
    fresh_db 10
    local ports=() pids=() n
    for n in 1 2 3; do
        local p
        p=$(free_port)
        serve "$p"
        ports+=("$p")
        pids+=("$STARTED")
        # The new instance settles as a follower before the window starts.
        sleep 12
        local leaders=0 q
        for q in "${ports[@]}"; do
            leaders=$((leaders + $(curl -fsS "http://127.0.0.1:$q/metrics" | awk -v s="site=\"$SLUG\"" '$1 ~ /^vetric_ingest_leader\{/ && index($1, s) {print $2 + 0}')))
        done
        sim -X POST "http://127.0.0.1:$SIM_PORT/__sim/calls/reset" >/dev/null
        sleep "$CALLS_WINDOW_S"
        local c
        c=$(sim "http://127.0.0.1:$SIM_PORT/__sim/calls")
        local per_min
        per_min=$(jq -r --argjson w "$CALLS_WINDOW_S" '.total * 60 / $w' <<<"$c")
        note "calls with $n instance(s): $(jq -c . <<<"$c") in ${CALLS_WINDOW_S}s = $per_min/min; sum of vetric_ingest_leader = $leaders   load $(load)"
        ROWS+=("| vendor calls per minute | $n instance(s), poll 10 s, ${CALLS_WINDOW_S} s window | **$per_min** | $(jq -r '"login \(.login), chargepoints \(.chargepoints), transaction \(.transaction)"' <<<"$c"); Σ vetric_ingest_leader = $leaders |")
    done
    for p in "${pids[@]}"; do stop "$p"; done
    stop "$SIM"
}

# ------------------------------------------------------------------------------------------
run_wrk() { # LABEL URL HEADER -> "rps p50 p99 non2xx"
    local out=$WORK/wrk.$RANDOM
    wrk -t"$THREADS" -c"$CONNS" -d2s -H "$3" "$2" >/dev/null
    wrk -t"$THREADS" -c"$CONNS" -d"${WRK_S}s" --latency -H "$3" "$2" >"$out"
    local rps p50 p99 bad
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(awk '$1 == "50%" {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    bad=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    note "  $1: $rps req/s, p50 $p50, p99 $p99, non-2xx ${bad:-0}   load $(load)"
    echo "$rps $p50 $p99 ${bad:-0}"
}
dashboard() {
    sim_start
    fresh_db 10
    local port
    port=$(free_port)
    serve "$port"
    local pid=$STARTED
    login "$port"
    wait_for 60 is_fresh "$port"
    sleep 5
    local phase state
    for phase in ${DASH_ORDER:-healthy outage}; do
        if [[ $phase == healthy ]]; then
            heal
            wait_for 60 is_fresh "$port"
        fi
        if [[ $phase == outage ]]; then
            outage
            # Two missed polls: the data is stale and the client is backing off / breaker open.
            stale() { [[ $(freshness "$port") == stale\ * ]]; }
            wait_for 60 stale
            sleep 10
        fi
        state=$(freshness "$port")
        note "dashboard, vendor $phase (API freshness: $state)"
        local a p
        read -r -a a < <(run_wrk "API $phase" "http://127.0.0.1:$port/api/v1/sites/$SLUG/chargers" "Authorization: Bearer $TOKEN")
        read -r -a p < <(run_wrk "page $phase" "http://127.0.0.1:$port/sites/$SLUG" "Cookie: $COOKIE")
        ROWS+=("| dashboard, vendor $phase | chargers API (5 connectors, \`${state%% *}\`) | **${a[0]} req/s**, p99 **${a[2]}** | p50 ${a[1]}, non-2xx ${a[3]} |")
        ROWS+=("| dashboard, vendor $phase | overview page | **${p[0]} req/s**, p99 **${p[2]}** | p50 ${p[1]}, non-2xx ${p[3]} |")
    done
    heal
    stop "$pid"
    stop "$SIM"
}

note "vetric ha bench: $(date -u +%FT%TZ), nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $("$VETRIC" --version), $(psql -tAq "$PG_URL/postgres" -c 'show server_version'), load $(load)"
phases=("$@")
((${#phases[@]})) || phases=(recovery takeover calls wrk)
for phase in "${phases[@]}"; do
    case $phase in
    recovery) recovery ;;
    takeover) takeover ;;
    calls) calls_per_minute ;;
    wrk) dashboard ;;
    *) echo "unknown phase $phase (recovery, takeover, calls, wrk)" >&2; exit 2 ;;
    esac
done
echo
echo "| what | setting | result | notes |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "load average at the end: $(load)"
