# Shared by the integration tests: a whole bus on loopback, in a temporary
# directory, stopped and removed when the test ends.
#
#   BUILD     the meson build directory (set by meson test)
#   KEEP=1    keep the work directory for a post-mortem
set -euo pipefail
: "${BUILD:?BUILD must name the meson build directory}"
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d /tmp/sharebus-test.XXXXXX)
CERTS=$WORK/certs
PIDS=()
declare -A AGENT_PID
SUBJECT=900101-1234567
CHECKUP=health.checkup.vision-hearing
RENEWAL=driver-licence-renewal

cert()   { "$BUILD/certs/sharebus-cert" "$@"; }
sb()     { "$BUILD/agent/sharebus" "$@"; }
rogue()  { "$BUILD/tests/rogue" --certs "$CERTS" --agency "$1" --broker "$BROKER" "${@:2}"; }
audit()  { "$BUILD/audit/sharebus-audit" "$@"; }

cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  local end=$((SECONDS + 10))
  for pid in "${PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "process $pid ignored SIGTERM: killed" >&2
      kill -9 "$pid" 2>/dev/null || true
      status=1
    fi
    wait "$pid" 2>/dev/null || true
  done
  if [ $status -ne 0 ] || [ -n "${KEEP:-}" ]; then
    echo "--- logs (work directory $WORK)"
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; }; done
  fi
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
  exit $status
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# Runs CMD, which must fail with "error: KIND:" on stderr.
expect_error() {
  local kind=$1; shift
  local out
  if out=$("$@" 2>&1); then fail "expected $kind, got success: $out"; fi
  grep -q "^error: $kind:" <<<"$out" || fail "expected error $kind, got: $out"
}

# Polls CMD until it succeeds, up to SECONDS.
wait_for() {
  local seconds=$1; shift
  local end=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || fail "timed out waiting for: $*"
    sleep 0.1
  done
}

setup_certs() {
  cert init --dir "$CERTS" >/dev/null
  cert issue --dir "$CERTS" --broker >/dev/null
  for a in "$@"; do cert issue --dir "$CERTS" --agency "$a" --name "$a" >/dev/null; done
}

setup_policy() {
  mkdir -p "$WORK/policy"
  cp "$SRC/policy/examples/health.yaml" "$SRC/policy/examples/events.yaml" "$WORK/policy/"
}

start_broker() {
  local tries=0
  while :; do
    PORT=$((20000 + (RANDOM % 20000)))
    BROKER=tcp://127.0.0.1:$PORT
    "$BUILD/broker/sharebus-broker" --certs "$CERTS" --policy "$WORK/policy" \
      --data "$WORK/broker" --bind "$BROKER" --checkpoint-interval 500 "$@" \
      >>"$WORK/broker.log" 2>&1 &
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    # Up, or dead (the random port was taken: try another).
    local end=$((SECONDS + 10))
    while kill -0 "$BROKER_PID" 2>/dev/null && [ ! -S "$WORK/broker/admin.sock" ] \
          && [ $SECONDS -lt $end ]; do
      sleep 0.1
    done
    [ -S "$WORK/broker/admin.sock" ] && kill -0 "$BROKER_PID" 2>/dev/null && return 0
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    tries=$((tries + 1))
    [ $tries -lt 5 ] || fail "broker does not start"
  done
}

# Restarts the broker on the same port (after stop_broker or kill -9).
restart_broker() {
  "$BUILD/broker/sharebus-broker" --certs "$CERTS" --policy "$WORK/policy" \
    --data "$WORK/broker" --bind "$BROKER" --checkpoint-interval 500 "$@" \
    >>"$WORK/broker.log" 2>&1 &
  BROKER_PID=$!
  PIDS+=("$BROKER_PID")
  wait_for 10 test -S "$WORK/broker/admin.sock"
}

stop_broker() {
  kill "$BROKER_PID"
  wait "$BROKER_PID" || fail "broker exited with status $? on SIGTERM"
}

agent_ep() { echo "ipc://$WORK/$1.sock"; }

# Lines in FILE so far (logs are appended to across restarts).
lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
# True when PATTERN appears in FILE after its first SKIP lines.
logged_after() { tail -n +"$(($2 + 1))" "$1" 2>/dev/null | grep -q "$3"; }

start_agent() {
  local a=$1 skip
  skip=$(lines "$WORK/$a.log")
  "$BUILD/agent/sharebus-agent" --agency "$a" --certs "$CERTS" --broker "$BROKER" \
    --listen "$(agent_ep "$a")" --data "$WORK/agent-$a" >>"$WORK/$a.log" 2>&1 &
  AGENT_PID[$a]=$!
  PIDS+=("$!")
  wait_for 20 logged_after "$WORK/$a.log" "$skip" "policy .* received from the broker"
}

# The sample nhis back-end serving checkup records.
start_nhis_backend() {  # start_nhis_backend [sharebus serve options, e.g. --delay MS]
  local skip
  skip=$(lines "$WORK/nhis-backend.log")
  "$BUILD/agent/sharebus" serve --agent "$(agent_ep nhis)" --dataset "$CHECKUP" \
    --records "$SRC/tests/data/nhis-checkups.json" "$@" >>"$WORK/nhis-backend.log" 2>&1 &
  NHIS_BACKEND=$!
  PIDS+=("$NHIS_BACKEND")
  wait_for 10 logged_after "$WORK/nhis-backend.log" "$skip" "serving $CHECKUP"
}

# Stops the nhis back-end and starts another with these options.
restart_nhis_backend() {
  kill "$NHIS_BACKEND"
  wait "$NHIS_BACKEND" || true
  start_nhis_backend "$@"
}

# A typical bus: certificates, policy, broker, agents nhis koroad mois nts,
# and the nhis back-end.
start_bus() {
  setup_certs nhis koroad mois nts
  setup_policy
  start_broker "$@"
  for a in nhis koroad mois nts; do start_agent "$a"; done
  start_nhis_backend
}

request() {  # request AGENCY [options...]
  local a=$1; shift
  sb request --agent "$(agent_ep "$a")" "$@"
}

grant() {  # grant AGENCY CONSUMER DATASET PURPOSE UNTIL
  sb consent grant --agent "$(agent_ep "$1")" --subject "$SUBJECT" --consumer "$2" \
    --dataset "$3" --purpose "$4" --until "$5" --evidence "test"
}

# Nothing crossed the broker unaudited: every request nhis's agent logged
# as received was routed on the broker's record, and every reply koroad's
# agent received was forwarded on it. Run with the daemons stopped.
check_on_record() {
  ids() { grep -o "\"$1\":\"[0-9a-f]\{32\}\"" | sed 's/.*:"\(.*\)"/\1/' | sort -u; }
  audit query --data "$WORK/agent-nhis" --agency koroad --kind message-received --json \
    | ids message_id >"$WORK/nhis-received"
  audit query --data "$WORK/broker" --kind request-routed --json | ids message_id >"$WORK/routed"
  audit query --data "$WORK/agent-koroad" --agency nhis --kind message-received --json \
    | ids correlation_id >"$WORK/koroad-received"
  audit query --data "$WORK/broker" --kind reply-forwarded --json | ids correlation_id \
    >"$WORK/forwarded"
  [ -s "$WORK/nhis-received" ] && [ -s "$WORK/koroad-received" ] || fail "the agents logged nothing"
  local missing
  missing=$(comm -23 "$WORK/nhis-received" "$WORK/routed" | wc -l)
  [ "$missing" -eq 0 ] || fail "$missing requests reached nhis without a request-routed record"
  missing=$(comm -23 "$WORK/koroad-received" "$WORK/forwarded" | wc -l)
  [ "$missing" -eq 0 ] || fail "$missing replies reached koroad without a reply-forwarded record"
  pass "all $(wc -l <"$WORK/nhis-received") requests and $(wc -l <"$WORK/koroad-received") replies received are on the broker's record"
}
