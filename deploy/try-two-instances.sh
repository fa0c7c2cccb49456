#!/usr/bin/env bash
# Issue 7, as a new operator would try it (docs/operations.md, "Scale out"): two `vetric serve`
# on one PostgreSQL database, behind nginx with deploy/nginx/vetric.conf, polling a CVE-Pro
# simulator; kill -9 the ingest leader and check that the dashboard stays live.
#
#   1. a CVE-Pro simulator (`vetric sim cvepro`, 5 chargers, sessions SPEED x faster);
#   2. a fresh database DB on PG_URL (dropped and created), a vetric.toml as the doc writes it
#      (secrets in `_file`s), `check-config`, `migrate`, a first admin (`user add`);
#   3. instance A on PORT_A and B on PORT_B (VETRIC_DATABASE_URL / VETRIC_LISTEN, as the doc);
#   4. deploy/nginx/vetric.conf installed in /etc/nginx/sites-available + sites-enabled, changed
#      only as the doc says (the server name; for this trial a self-signed certificate instead of
#      certbot's; the upstream ports if PORT_A/PORT_B are not 8080/8081); `nginx -t`; nginx
#      started (or reloaded when it already runs);
#   5. through nginx (https://NAME, resolved to 127.0.0.1): log in, the overview page, the
#      chargers API, an SSE stream on the leader (`curl -N`);
#   6. kill -9 the leader; then: pages and API through nginx keep answering 200, the SSE stream
#      ends and a new one (through nginx) reaches the survivor and keeps receiving events, nginx
#      marks the dead server down (passive check, error.log), the survivor becomes the leader and
#      calls the vendor (counted at the simulator), and the data keeps getting fresher.
#
# Prints PASS/FAIL lines; exit 0 only when every check passed. Runs as root on Debian with
# nginx and PostgreSQL; uses a temp dir and removes everything it installed (the nginx site,
# the database, the processes it started, by PID) on exit. Not part of CI.
#
#   deploy/try-two-instances.sh
# Knobs (env): VETRIC=(vetric on PATH, else $CARGO_TARGET_DIR/release/vetric)
#   PG_URL=postgres://postgres@127.0.0.1:5432 DB=vetric_trial NAME=vetric.example.com
#   PORT_A=8080 PORT_B=8081 SIM_PORT=7070 POLL=5 SPEED=60 KEEP=1 (keep the temp dir)
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/vetric-target}
VETRIC=${VETRIC:-$(command -v vetric || echo "$CARGO_TARGET_DIR/release/vetric")}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
DB=${DB:-vetric_trial}
NAME=${NAME:-vetric.example.com}
PORT_A=${PORT_A:-8080}
PORT_B=${PORT_B:-8081}
SIM_PORT=${SIM_PORT:-7070}
POLL=${POLL:-5}
SPEED=${SPEED:-60}
SLUG=jardim-palmeiras
SITE_CONF=/etc/nginx/sites-available/vetric.conf
SITE_LINK=/etc/nginx/sites-enabled/vetric.conf

FAILS=0
pass() { printf 'PASS %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; FAILS=$((FAILS + 1)); }
check() { # DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
die() { printf 'FAIL %s\n' "$*"; exit 1; }
note() { printf '     %s\n' "$*"; }

[[ $(id -u) == 0 ]] || die "run as root (it installs an nginx site and starts nginx)"
for tool in nginx psql openssl curl jq ss; do
    command -v "$tool" >/dev/null || die "missing $tool"
done
[[ -x $VETRIC ]] || die "no vetric binary at $VETRIC (cargo build --release -p vetric, or VETRIC=...)"
[[ -e $SITE_CONF || -e $SITE_LINK ]] && die "$SITE_CONF or $SITE_LINK exists already: not touching it"
for port in 80 443 "$PORT_A" "$PORT_B" "$SIM_PORT"; do
    ss -Htln "sport = :$port" | grep -q . && die "port $port is taken"
done

WORK=$(mktemp -d /tmp/vetric-trial.XXXXXX)
chmod 755 "$WORK"
PIDS=()
NGINX_STARTED=
NGINX_TOUCHED=
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    if [[ -n $NGINX_TOUCHED ]]; then
        rm -f "$SITE_LINK" "$SITE_CONF"
        if [[ -n $NGINX_STARTED ]]; then nginx -s quit 2>/dev/null; else nginx -s reload 2>/dev/null; fi
    fi
    psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
    if [[ -n ${KEEP:-} ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
# Waits up to $1 s for COMMAND... to succeed.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}
ready() { curl -fsS -o /dev/null "http://127.0.0.1:$1/health/ready" 2>/dev/null; }
role() { # PORT -> leader / follower / down
    curl -fsS "http://127.0.0.1:$1/health" 2>/dev/null |
        jq -r --arg k "ingest:$SLUG" '[.checks[$k][]? | select(.observedUnit == "role") | .observedValue][0] // "none"' 2>/dev/null ||
        echo down
}
sse_clients() { curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null | awk '$1 == "vetric_sse_clients" {print $2 + 0}'; }
vendor_calls() { curl -fsS "http://127.0.0.1:$SIM_PORT/__sim/calls" | jq .total; }
# Through nginx, as a browser reaches it.
NG=(--resolve "$NAME:443:127.0.0.1" --resolve "$NAME:80:127.0.0.1" --cacert "$WORK/tls/cert.pem")
ng() { curl -sS "${NG[@]}" "$@"; }

echo "vetric two-instance trial: $(date -u +%FT%TZ), $("$VETRIC" --version 2>/dev/null), $(nginx -v 2>&1), load $(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. the vendor ------------------------------------------------------------------------
"$VETRIC" sim cvepro --listen "127.0.0.1:$SIM_PORT" --chargers 5 --speed "$SPEED" >"$WORK/sim.out" 2>&1 &
SIM=$!
PIDS+=("$SIM")
wait_for 30 curl -fsS -o /dev/null "http://127.0.0.1:$SIM_PORT/__sim/calls" || die "the simulator did not start"

# --- 2. database, configuration, first user -----------------------------------------------
psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" ||
    die "cannot create database $DB on $PG_URL"
DATABASE_URL="$PG_URL/$DB"
mkdir -p "$WORK/etc/secrets"
printf '%s' sim-api-key >"$WORK/etc/secrets/api-key"
printf '%s' simulador >"$WORK/etc/secrets/password"
chmod 600 "$WORK/etc/secrets/"*
cat >"$WORK/etc/vetric.toml" <<EOF
listen = "127.0.0.1:$PORT_A"
public_url = "https://$NAME"
database_url = "$DATABASE_URL"

[[sites]]
slug = "$SLUG"
name = "Condomínio Jardim Palmeiras"

[sites.cvepro]
base_url = "http://127.0.0.1:$SIM_PORT"
api_key_file = "$WORK/etc/secrets/api-key"
email = "operador@condominio.example"
password_file = "$WORK/etc/secrets/password"
poll_interval_s = $POLL
EOF
CONFIG=$WORK/etc/vetric.toml
logged() { local out=$1; shift; "$@" >"$out" 2>&1; } # LOG COMMAND...: output to LOG only
check "check-config accepts the configuration" logged "$WORK/check.out" "$VETRIC" check-config --config "$CONFIG"
check "migrate creates the schema in $DB" logged "$WORK/migrate.out" "$VETRIC" migrate --config "$CONFIG"
ADMIN=trial@example.com
PASSWORD=trial-password-$RANDOM$RANDOM
check "user add creates the first admin" \
    bash -c 'printf "%s\n" "$1" | "$2" user add --config "$3" --email "$4" --role admin >"$5" 2>&1' _ \
    "$PASSWORD" "$VETRIC" "$CONFIG" "$ADMIN" "$WORK/user.out"

# --- 3. two instances ---------------------------------------------------------------------
start_instance() { # PORT LOG -> PID in $STARTED
    VETRIC_DATABASE_URL=$DATABASE_URL VETRIC_LISTEN=127.0.0.1:$1 \
        "$VETRIC" serve --config "$CONFIG" >"$2.out" 2>"$2.err" &
    STARTED=$!
    PIDS+=("$STARTED")
}
start_instance "$PORT_A" "$WORK/a"
PID_A=$STARTED
start_instance "$PORT_B" "$WORK/b"
PID_B=$STARTED
check "both instances ready (/health/ready 200 on $PORT_A and $PORT_B)" \
    wait_for 60 bash -c "curl -fsS -o /dev/null http://127.0.0.1:$PORT_A/health/ready && curl -fsS -o /dev/null http://127.0.0.1:$PORT_B/health/ready"
one_leader() { [[ "$(role "$PORT_A") $(role "$PORT_B")" =~ ^(leader\ follower|follower\ leader)$ ]]; }
check "exactly one leader for $SLUG (/health ingest:$SLUG)" wait_for 30 one_leader
note "roles: $PORT_A $(role "$PORT_A"), $PORT_B $(role "$PORT_B")"
if [[ $(role "$PORT_A") == leader ]]; then
    LEADER=$PID_A LPORT=$PORT_A SPORT=$PORT_B
else
    LEADER=$PID_B LPORT=$PORT_B SPORT=$PORT_A
fi

# --- 4. nginx -----------------------------------------------------------------------------
mkdir -p "$WORK/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$NAME" -addext "subjectAltName=DNS:$NAME" \
    -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>/dev/null || die "openssl could not make a certificate"
# What the doc tells a user to change: the server name, the certificate (self-signed for a
# trial), and the upstream's ports.
sed -e "s/vetric\.example\.com/$NAME/g" \
    -e "s|ssl_certificate .*|ssl_certificate     $WORK/tls/cert.pem;|" \
    -e "s|ssl_certificate_key .*|ssl_certificate_key $WORK/tls/key.pem;|" \
    -e "s/server 127\.0\.0\.1:8080 /server 127.0.0.1:$PORT_A /" \
    -e "s/server 127\.0\.0\.1:8081 /server 127.0.0.1:$PORT_B /" \
    "$ROOT/deploy/nginx/vetric.conf" >"$WORK/vetric.conf"
NGINX_TOUCHED=1
install -m 644 "$WORK/vetric.conf" "$SITE_CONF"
ln -s ../sites-available/vetric.conf "$SITE_LINK"
install -d /var/www/letsencrypt
if nginx -t >"$WORK/nginx-t.out" 2>&1; then pass "nginx -t accepts the site"; else
    fail "nginx -t accepts the site"
    sed 's/^/     /' "$WORK/nginx-t.out"
    exit 1
fi
if [[ -s /run/nginx.pid ]] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
    nginx -s reload
else
    nginx && NGINX_STARTED=1
fi
ERRLOG=/var/log/nginx/error.log
ERR_START=$(stat -c %s "$ERRLOG" 2>/dev/null || echo 0)
check "nginx answers on 443" wait_for 10 curl -fsS "${NG[@]}" -o /dev/null "https://$NAME/health/ready"
check "http://$NAME redirects to https" \
    bash -c '[[ $(curl -sS "${@:2}" -o /dev/null -w "%{http_code} %{redirect_url}" "http://$1/sites") == "301 https://$1/sites" ]]' _ "$NAME" "${NG[@]}"

# --- 5. through nginx ---------------------------------------------------------------------
ng -D "$WORK/login.h" -o "$WORK/login.json" -H 'Content-Type: application/json' \
    -d "$(jq -n --arg e "$ADMIN" --arg p "$PASSWORD" '{email: $e, password: $p}')" "https://$NAME/api/v1/auth/login"
TOKEN=$(jq -r '.token // empty' "$WORK/login.json" 2>/dev/null)
COOKIE=$(awk 'tolower($1) == "set-cookie:" {print $2}' "$WORK/login.h" | tr -d '\r' | sed 's/;$//' | head -1)
check "login through nginx (token and session cookie)" test -n "$TOKEN" -a -n "$COOKIE"
grep -qi '^set-cookie:.*; *secure' "$WORK/login.h" && pass "the session cookie is Secure (public_url https)" ||
    fail "the session cookie is Secure (public_url https)"
status() { ng -o /dev/null -w '%{http_code}' "$@"; }
api() { ng -H "Authorization: Bearer $TOKEN" "https://$NAME/api/v1/sites/$SLUG/chargers"; }
check "overview page through nginx answers 200" test "$(status -H "Cookie: $COOKIE" "https://$NAME/sites/$SLUG")" = 200
five_fresh() { [[ $(api | jq -r '"\(.data | length) \(.freshness.state)"' 2>/dev/null) == "5 fresh" ]]; }
check "chargers API through nginx lists 5 connectors, fresh" wait_for 60 five_fresh
check "/metrics through nginx is allowed from localhost" test "$(status "https://$NAME/metrics")" = 200

# An SSE stream through nginx that lands on the leader (round robin: a few tries).
open_sse() { # FILE -> PID in $SSE
    curl -sS -N "${NG[@]}" -H "Cookie: $COOKIE" "https://$NAME/sites/$SLUG/events" >"$1" 2>"$1.err" &
    SSE=$!
    PIDS+=("$SSE")
}
got_cards() { grep -qs '^event: cards' "$1"; }
SSE=
for try in 1 2 3 4 5 6; do
    open_sse "$WORK/sse1.$try"
    wait_for 10 got_cards "$WORK/sse1.$try" || { kill "$SSE"; SSE=; continue; }
    if [[ $(sse_clients "$LPORT") -ge 1 ]]; then break; fi
    kill "$SSE"
    wait "$SSE" 2>/dev/null
    SSE=
done
if [[ -n $SSE ]]; then pass "SSE stream through nginx on the leader (:$LPORT), first event: cards"; else
    fail "SSE stream through nginx on the leader"
fi

# --- 6. kill -9 the leader ----------------------------------------------------------------
sleep "$POLL"
KILL_MS=$(now_ms)
kill -9 "$LEADER"
wait "$LEADER" 2>/dev/null
# A request the leader sent just before dying may still reach the simulator; the new leader
# waits a grace of two leader ticks (>= 2 s) before its first call, so count from 0.1 s on.
sleep 0.1
CALLS_BEFORE=$(vendor_calls)
note "killed the leader (:$LPORT, pid $LEADER) with SIGKILL at $(date -u +%T.%3N)"

# Pages and API at once, and for a while: nginx retries the other server (proxy_next_upstream).
bad=0
for _ in $(seq 1 20); do
    [[ $(status -H "Cookie: $COOKIE" "https://$NAME/sites/$SLUG") == 200 ]] || bad=$((bad + 1))
    [[ $(status -H "Authorization: Bearer $TOKEN" "https://$NAME/api/v1/sites/$SLUG/chargers") == 200 ]] || bad=$((bad + 1))
done
check "40 page and API requests through nginx right after the kill: all 200 (non-200: $bad)" test "$bad" = 0
grep -a 'connect() failed' <(tail -c +"$((ERR_START + 1))" "$ERRLOG") >"$WORK/nginx-errors" || true
check "nginx saw the dead server (error.log: connect() failed ... $LPORT)" grep -q "127.0.0.1:$LPORT" "$WORK/nginx-errors"
# Passive health check: after max_fails=3 failures a worker skips the server for
# fail_timeout=10s, so 40 requests cost at most 3 failed connects per worker process, not one
# in two. ("upstream server temporarily disabled" is logged at `warn`, below Debian's default
# error_log level, so the count is the evidence.)
WORKERS=$(pgrep -c -f '^nginx: worker process' || echo 1)
FAILED_CONNECTS=$(grep -c "127.0.0.1:$LPORT" "$WORK/nginx-errors" || true)
check "nginx marked the dead server down: $FAILED_CONNECTS failed connects for 40 requests (<= 3 x $WORKERS workers)" \
    test "$FAILED_CONNECTS" -le $((3 * WORKERS))

# The stream on the dead instance ends; a browser's EventSource reconnects: so does curl here.
if [[ -n $SSE ]]; then
    check "the SSE stream on the killed instance ended" wait_for 10 bash -c "! kill -0 $SSE 2>/dev/null"
fi
open_sse "$WORK/sse2"
check "a new SSE stream through nginx gets its first event (cards)" wait_for 15 got_cards "$WORK/sse2"
check "... served by the survivor (:$SPORT vetric_sse_clients >= 1)" test "$(sse_clients "$SPORT")" -ge 1

# Leadership moves; the new leader polls the vendor.
T_LEADER=
t_leader() { [[ $(role "$SPORT") == leader ]] && T_LEADER=$(($(now_ms) - KILL_MS)); }
check "the survivor (:$SPORT) becomes the leader" wait_for 60 t_leader
T_CALL=
t_call() { (($(vendor_calls) > CALLS_BEFORE)) && T_CALL=$(($(now_ms) - KILL_MS)); }
check "the new leader calls the vendor (simulator's call count grows)" wait_for 60 t_call
note "leader after $(awk -v m="${T_LEADER:-0}" 'BEGIN {printf "%.1f", m / 1000}') s, first vendor call after $(awk -v m="${T_CALL:-0}" 'BEGIN {printf "%.1f", m / 1000}') s (poll ${POLL} s)"

# The data keeps updating: a good read stored after the kill, seen through nginx.
fresh_after_kill() {
    local as_of state
    read -r state as_of < <(api | jq -r '"\(.freshness.state) \(.freshness.as_of)"' 2>/dev/null)
    [[ $state == fresh && -n $as_of && $as_of != null ]] || return 1
    (($(date -d "$as_of" +%s%3N) > KILL_MS))
}
check "chargers API through nginx: fresh data read after the kill" wait_for $((4 * POLL + 20)) fresh_after_kill
cards_now() { grep -c '^event: cards' "$WORK/sse2"; }
CARDS0=$(cards_now)
check "the new SSE stream keeps receiving updates (another cards event)" \
    wait_for $((6 * POLL + 30)) bash -c "(( \$(grep -c '^event: cards' '$WORK/sse2') > $CARDS0 ))"
check "/health through nginx: the survivor answers, store pass" \
    bash -c "curl -sS ${NG[*]} https://$NAME/health | jq -e '.checks[\"store:responseTime\"][0].status == \"pass\"' >/dev/null"

# --- the dead one comes back as a follower -------------------------------------------------
start_instance "$LPORT" "$WORK/restarted"
check "the restarted instance (:$LPORT) is ready and a follower" \
    wait_for 60 bash -c "curl -fsS -o /dev/null http://127.0.0.1:$LPORT/health/ready && [[ \$(curl -fsS http://127.0.0.1:$LPORT/health | jq -r '[.checks[\"ingest:$SLUG\"][] | select(.observedUnit == \"role\") | .observedValue][0]') == follower ]]"

echo
if ((FAILS == 0)); then echo "RESULT: PASS (every check)"; else echo "RESULT: FAIL ($FAILS check(s) failed)"; fi
((FAILS == 0))
