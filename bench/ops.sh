#!/usr/bin/env bash
# Operations figures for BENCHMARKS.md ("Operations: memory, start-up, backup"), issue 6:
#
#   memory   RSS (VmRSS, VmHWM) of `vetric demo` at idle, and of `vetric serve` polling
#            100 sites x 100 chargers (10,000 connectors) served by CVE-Pro simulators in a
#            separate process (ingest_bench --serve-sims)
#   startup  spawn of `vetric serve` -> first 200 from /health/ready, median of RUNS, on SQLite
#            (fresh and existing store) and PostgreSQL (fresh and existing database)
#   backup   `vetric backup` of a store holding a year of sessions (year_of_sessions example),
#            median of 3, on SQLite and PostgreSQL (pg_dump)
#
# Usage (from the workspace root, after the release build):
#   cargo build --release -p vetric --bin vetric
#   cargo build --release -p vetric-engine --example ingest_bench
#   cargo build --release -p vetric-store --example year_of_sessions
#   bench/ops.sh [memory] [startup] [backup]        # none = all three
#
# Loopback only; every process it starts is stopped by PID at the end (trap). Knobs (env):
#   DEMO_IDLE_S=30 SERVE_S=90 SITES=100 CHARGERS=100 RUNS=5 BACKUP_RUNS=3
#   PG_URL=postgres://postgres@127.0.0.1:5432   (databases vetric_ops_* are created and dropped;
#   PG_URL= (empty) skips PostgreSQL)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REL=${CARGO_TARGET_DIR:-$ROOT/target}/release
VETRIC=$REL/vetric
INGEST_BENCH=$REL/examples/ingest_bench
YEAR=$REL/examples/year_of_sessions
DEMO_IDLE_S=${DEMO_IDLE_S:-30}
SERVE_S=${SERVE_S:-90}
SITES=${SITES:-100}
CHARGERS=${CHARGERS:-100}
RUNS=${RUNS:-5}
BACKUP_RUNS=${BACKUP_RUNS:-3}
PG_URL=${PG_URL-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18480}

WORK=$(mktemp -d /tmp/vetric-ops.XXXXXX)
PIDS=()
PG_DBS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for db in "${PG_DBS[@]}"; do psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $db" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

need() { [[ -x $1 ]] || { echo "missing $1: build it first (see the header)" >&2; exit 1; }; }

note() { printf '%s\n' "$*"; }
kib() { awk -v k="$1" '/^'"$1"':/ {print $2}' "/proc/$2/status"; }
rss() { printf 'VmRSS %6.1f MiB  VmHWM %6.1f MiB' "$(echo "$(kib VmRSS "$1")/1024" | bc -l)" "$(echo "$(kib VmHWM "$1")/1024" | bc -l)"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# Waits (up to $2 s) until http://127.0.0.1:$1/health/ready answers 200.
wait_ready() {
    local deadline=$((SECONDS + ${2:-60}))
    until curl -fsS -o /dev/null "http://127.0.0.1:$1/health/ready" 2>/dev/null; do
        ((SECONDS < deadline)) || { echo "not ready after ${2:-60} s" >&2; return 1; }
        sleep 0.1
    done
}
# Stops one process we started (SIGTERM, then wait).
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

site_toml() { # slug base_url
    cat <<EOF

[[sites]]
slug = "$1"
name = "Site $1"
timezone = "America/Sao_Paulo"
EOF
    if [[ -n ${2:-} ]]; then
        cat <<EOF

[sites.cvepro]
base_url = "$2"
api_key = "sim-api-key"
email = "operador@condominio.example"
password = "simulador"
poll_interval_s = 10
EOF
    fi
}

# ---------------------------------------------------------------------------------------------
memory() {
    need "$VETRIC"
    need "$INGEST_BENCH"
    note "## memory (load $(load))"
    # 1. demo at idle.
    "$VETRIC" demo --listen "127.0.0.1:$PORT" --data-dir "$WORK/demo" >"$WORK/demo.out" 2>"$WORK/demo.err" &
    local demo=$!
    PIDS+=("$demo")
    wait_ready "$PORT" 60
    sleep "$DEMO_IDLE_S"
    note "demo (5 chargers, poll 5 s) after ${DEMO_IDLE_S} s: $(rss "$demo")   load $(load)"
    stop "$demo"

    # 2. serve with SITES x CHARGERS connectors; simulators in a separate process.
    mkfifo "$WORK/sims.in"
    exec 3<>"$WORK/sims.in"
    "$INGEST_BENCH" --serve-sims "$SITES" --chargers-per-site "$CHARGERS" --speed 10 \
        <"$WORK/sims.in" >"$WORK/sims.out" 2>"$WORK/sims.err" &
    local sims=$!
    PIDS+=("$sims")
    local deadline=$((SECONDS + 120))
    until grep -qx ready "$WORK/sims.out"; do
        ((SECONDS < deadline)) || { echo "simulators not ready" >&2; exit 1; }
        sleep 0.2
    done
    mkdir -p "$WORK/big"
    {
        printf 'listen = "127.0.0.1:%s"\ndatabase_url = "sqlite://%s/vetric.db"\n' "$PORT" "$WORK/big"
        local i=0
        grep -v '^ready$' "$WORK/sims.out" | while read -r url; do
            i=$((i + 1))
            site_toml "$(printf 'site-%03d' "$i")" "$url"
        done
    } >"$WORK/big/vetric.toml"
    "$VETRIC" serve --config "$WORK/big/vetric.toml" >"$WORK/big.out" 2>"$WORK/big.err" &
    local serve=$!
    PIDS+=("$serve")
    local t0=$SECONDS
    wait_ready "$PORT" 120
    note "serve ($SITES sites x $CHARGERS chargers, poll 10 s, SQLite): ready after $((SECONDS - t0)) s: $(rss "$serve")"
    local s
    for ((s = 10; s <= SERVE_S; s += 10)); do
        sleep 10
        note "  t=${s}s: $(rss "$serve")   load $(load)"
    done
    note "  store: $(du -cb "$WORK/big"/vetric.db* | tail -1 | cut -f1) bytes;" \
        "sessions (open) $(sqlite3 "$WORK/big/vetric.db" "select count(*) || ' (' || sum(status = 'open') || ')' from sessions" 2>/dev/null || echo '?')," \
        "connectors $(sqlite3 "$WORK/big/vetric.db" 'select count(*) from connectors' 2>/dev/null || echo '?')"
    note "  simulator process: $(rss "$sims")"
    stop "$serve"
    # Start-up with the 100-site store already there (resume of every site before serving).
    startup_runs "serve, $SITES sites, existing SQLite store" "$WORK/big/vetric.toml" ""
    exec 3>&-
    stop "$sims"
}

# ---------------------------------------------------------------------------------------------
# startup_runs LABEL CONFIG FRESH_CMD: RUNS times: run FRESH_CMD (if any), spawn serve, time to
# the first 200 of /health/ready (polled every 5 ms), SIGTERM, wait.
startup_runs() {
    local label=$1 config=$2 fresh=$3 times=()
    for ((r = 0; r < RUNS; r++)); do
        [[ -n $fresh ]] && eval "$fresh"
        times+=("$(python3 - "$VETRIC" "$config" "$PORT" <<'EOF'
import subprocess, sys, time, urllib.request, signal
vetric, config, port = sys.argv[1:4]
t0 = time.monotonic()
p = subprocess.Popen([vetric, "serve", "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ms = None
while time.monotonic() - t0 < 120:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as r:
            if r.status == 200:
                ms = (time.monotonic() - t0) * 1000
                break
    except Exception:
        pass
    if p.poll() is not None:
        break
    time.sleep(0.005)
p.send_signal(signal.SIGTERM)
p.wait(timeout=60)
print(f"{ms:.0f}" if ms is not None else "nan")
EOF
)")
    done
    note "startup, $label: median $(printf '%s\n' "${times[@]}" | median) ms (runs: ${times[*]} ms)   load $(load)"
}

startup() {
    need "$VETRIC"
    note "## startup (load $(load))"
    # One site polling a simulator on loopback, as a small deployment.
    "$VETRIC" sim cvepro --listen "127.0.0.1:$((PORT + 1))" >/dev/null 2>&1 &
    local sim=$!
    PIDS+=("$sim")
    sleep 1
    mkdir -p "$WORK/s1"
    {
        printf 'listen = "127.0.0.1:%s"\ndatabase_url = "sqlite://%s/vetric.db"\n' "$PORT" "$WORK/s1"
        site_toml site-1 "http://127.0.0.1:$((PORT + 1))"
    } >"$WORK/s1/vetric.toml"
    startup_runs "1 site, fresh SQLite store" "$WORK/s1/vetric.toml" 'rm -f "$WORK"/s1/vetric.db*'
    startup_runs "1 site, existing SQLite store" "$WORK/s1/vetric.toml" ""
    if [[ -n $PG_URL ]]; then
        local db=vetric_ops_start
        PG_DBS+=("$db")
        {
            printf 'listen = "127.0.0.1:%s"\ndatabase_url = "%s/%s"\n' "$PORT" "$PG_URL" "$db"
            site_toml site-1 "http://127.0.0.1:$((PORT + 1))"
        } >"$WORK/pg.toml"
        startup_runs "1 site, fresh PostgreSQL database" "$WORK/pg.toml" \
            "psql -q '$PG_URL/postgres' -c 'DROP DATABASE IF EXISTS $db' -c 'CREATE DATABASE $db'"
        startup_runs "1 site, existing PostgreSQL database" "$WORK/pg.toml" ""
    fi
    stop "$sim"
}

# ---------------------------------------------------------------------------------------------
backup_runs() { # LABEL CONFIG
    local times=()
    for ((r = 0; r < BACKUP_RUNS; r++)); do
        local t0 t1
        t0=$(date +%s%N)
        "$VETRIC" backup --config "$2" --out "$WORK/backup.out" --force >"$WORK/backup.log"
        t1=$(date +%s%N)
        times+=("$(((t1 - t0) / 1000000))")
    done
    note "backup, $1: median $(printf '%s\n' "${times[@]}" | median) ms (runs: ${times[*]} ms);" \
        "output $(stat -c %s "$WORK/backup.out") bytes   load $(load)"
}

backup() {
    need "$VETRIC"
    need "$YEAR"
    note "## backup (load $(load))"
    mkdir -p "$WORK/year"
    "$YEAR" "sqlite://$WORK/year/vetric.db"
    printf 'listen = "127.0.0.1:%s"\ndatabase_url = "sqlite://%s/vetric.db"\n%s\n' \
        "$PORT" "$WORK/year" "$(site_toml year-condo)" >"$WORK/year/vetric.toml"
    note "SQLite store: $(du -cb "$WORK/year"/vetric.db* | tail -1 | cut -f1) bytes (file + WAL);" \
        "sessions $(sqlite3 "$WORK/year/vetric.db" 'select count(*) from sessions'), events $(sqlite3 "$WORK/year/vetric.db" 'select count(*) from events')"
    backup_runs "SQLite, a year of sessions" "$WORK/year/vetric.toml"
    if [[ -n $PG_URL ]]; then
        local db=vetric_ops_year
        PG_DBS+=("$db")
        psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
        "$YEAR" "$PG_URL/$db"
        printf 'listen = "127.0.0.1:%s"\ndatabase_url = "%s/%s"\n%s\n' \
            "$PORT" "$PG_URL" "$db" "$(site_toml year-condo)" >"$WORK/year/pg.toml"
        note "PostgreSQL database: $(psql -tAq "$PG_URL/$db" -c "select pg_database_size('$db')") bytes (pg_database_size)"
        backup_runs "PostgreSQL (pg_dump --format=custom), a year of sessions" "$WORK/year/pg.toml"
    fi
}

note "vetric ops bench: $(date -u +%FT%TZ), nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -h | awk '/^Mem:/ {print $2}') RAM, $(rustc --version 2>/dev/null || echo rustc ?)"
phases=("$@")
((${#phases[@]})) || phases=(memory startup backup)
for phase in "${phases[@]}"; do
    case $phase in
    memory | startup | backup) "$phase" ;;
    *) echo "unknown phase $phase (memory, startup, backup)" >&2; exit 2 ;;
    esac
done
