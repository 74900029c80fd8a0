#!/usr/bin/env bash
# Configuration files: broker and agent run from --config FILE alone, every
# command reads it, flags override it, and an unknown or malformed setting
# stops them with exit status 2 and FILE:LINE.
source "$(dirname "$0")/lib.sh"
setup_certs nhis koroad
setup_policy
BROKER_BIN="$BUILD/broker/sharebus-broker"
AGENT_BIN="$BUILD/agent/sharebus-agent"

must_fail() {  # must_fail STATUS PATTERN CMD...
  local want=$1 pattern=$2; shift 2
  local out status=0
  out=$("$@" 2>&1) || status=$?
  [ "$status" = "$want" ] || fail "expected exit $want, got $status from $*: $out"
  grep -q -- "$pattern" <<<"$out" || fail "expected '$pattern' from $*: $out"
}

# The broker from a file; the flag --log-level overrides the file's.
for try in 1 2 3 4 5; do
  PORT=$((20000 + RANDOM % 20000))
  BROKER=tcp://127.0.0.1:$PORT
  cat >"$WORK/broker.conf" <<EOF
# the test bus's broker
certs: $CERTS
policy: $WORK/policy
data: $WORK/broker
bind: $BROKER
skew: 30000
checkpoint-interval: 500
queue-max: 1000
map-max: 1024
log-level: error      # overridden below
EOF
  "$BROKER_BIN" --config "$WORK/broker.conf" --log-level info >>"$WORK/broker.log" 2>&1 &
  BROKER_PID=$!
  PIDS+=("$BROKER_PID")
  wait_for 10 test -S "$WORK/broker/admin.sock" || true
  kill -0 "$BROKER_PID" 2>/dev/null && break
done
wait_for 10 grep -q "broker listening on $BROKER" "$WORK/broker.log"
pass "broker runs from --config; --log-level on the command line overrides the file"

"$BROKER_BIN" status --config "$WORK/broker.conf" --json | grep -q '"uptime_s"' \
  || fail "status --config"
"$BROKER_BIN" reload --config "$WORK/broker.conf" | grep -q "^policy reloaded" || fail "reload --config"
pass "status and reload read --data from the file"

cat >"$WORK/koroad.conf" <<EOF
agency: koroad
certs: $CERTS
broker: "$BROKER"
listen: ipc://$WORK/koroad.sock
data: $WORK/agent-koroad
EOF
"$AGENT_BIN" --config "$WORK/koroad.conf" >>"$WORK/koroad.log" 2>&1 &
AGENT_PID[koroad]=$!
PIDS+=("$!")
wait_for 20 grep -q "policy .* received from the broker" "$WORK/koroad.log"
"$AGENT_BIN" --config "$WORK/koroad.conf" --agency nhis --listen "ipc://$WORK/nhis.sock" \
  --data "$WORK/agent-nhis" >>"$WORK/nhis.log" 2>&1 &
AGENT_PID[nhis]=$!
PIDS+=("$!")
wait_for 20 grep -q "policy .* received from the broker" "$WORK/nhis.log"
grep -q "agent of nhis serving" "$WORK/nhis.log" || fail "--agency did not override the file"
start_nhis_backend
grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null
request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT >/dev/null \
  || fail "a request between agents configured by files"
pass "agents run from --config; flags override the file"

# Unknown, malformed and refused settings: FILE:LINE, exit 2, nothing started.
bad() {  # bad NAME LINE PATTERN TEXT: a broker file that must be refused at LINE
  printf '%b' "$4" >"$WORK/$1.conf"
  must_fail 2 "^sharebus-broker: $WORK/$1.conf:$2: $3" "$BROKER_BIN" --config "$WORK/$1.conf"
}
bad unknown 3 "unknown setting 'bogus' (settings: certs, policy, " \
  "certs: /c\npolicy: /p\nbogus: 1\n"
bad typo 2 "unknown setting 'map_max'" "data: /d\nmap_max: 10\n"
bad value 2 "skew: needs milliseconds" "data: /d\nskew: soon\n"
bad level 4 "log-level: error, warning, notice, info or debug" "\n\ndata: /d\nlog-level: loud\n"
bad metrics 1 "metrics: needs HOST:PORT" "metrics: nowhere\n"
bad list 2 "'policy' needs a single value, not a list" "certs: /c\npolicy: [a, b]\n"
bad empty 2 "'policy' needs a single value, not nothing" "certs: /c\npolicy:\n"
bad twice 2 "" "data: /a\ndata: /b\n"
bad yaml 2 "did not find expected key" "data: /a\n- y\n"
bad quote 2 "double-quoted scalar without closing quote" "data: /a\nbind: \"x\n"
bad flag 1 "unknown setting 'json'" "json: true\n"
bad nested 1 "unknown setting 'config'" "config: other.conf\n"
must_fail 2 "sharebus-broker: $WORK/missing.conf: No such file" "$BROKER_BIN" --config "$WORK/missing.conf"
must_fail 2 "sharebus-broker: --skew: needs milliseconds" "$BROKER_BIN" --config "$WORK/broker.conf" --skew 0
printf 'agency: koroad\ncerts: %s\nwho: me\n' "$CERTS" >"$WORK/agent-bad.conf"
must_fail 2 "^sharebus-agent: $WORK/agent-bad.conf:3: unknown setting 'who'" \
  "$AGENT_BIN" --config "$WORK/agent-bad.conf"
printf 'agency: KOROAD\n' >"$WORK/agent-id.conf"
must_fail 2 "^sharebus-agent: $WORK/agent-id.conf:1: agency: invalid agency id 'KOROAD'" \
  "$AGENT_BIN" --config "$WORK/agent-id.conf"
pass "unknown, malformed and refused settings are named with FILE:LINE, exit 2"

kill "${AGENT_PID[koroad]}" "${AGENT_PID[nhis]}"
wait "${AGENT_PID[koroad]}" "${AGENT_PID[nhis]}" || true
stop_broker
