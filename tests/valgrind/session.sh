#!/usr/bin/env bash
# The session tests/valgrind/run watches: the request path through daemons
# that run under Valgrind (BUILD is the wrapper directory it made). Every
# process is stopped with SIGTERM and must exit with status 0, which under
# --error-exitcode means Valgrind found nothing.
source "$(dirname "$0")/../integration/lib.sh"

# Valgrind makes start-up many times slower: lib.sh's waits, longer.
start_broker() {
  PORT=$((20000 + (RANDOM % 20000)))
  BROKER=tcp://127.0.0.1:$PORT
  "$BUILD/broker/sharebus-broker" --certs "$CERTS" --policy "$WORK/policy" \
    --data "$WORK/broker" --bind "$BROKER" --checkpoint-interval 500 >>"$WORK/broker.log" 2>&1 &
  BROKER_PID=$!
  PIDS+=("$BROKER_PID")
  wait_for 180 test -S "$WORK/broker/admin.sock"
}
start_agent() {
  local a=$1
  "$BUILD/agent/sharebus-agent" --agency "$a" --certs "$CERTS" --broker "$BROKER" \
    --listen "$(agent_ep "$a")" --data "$WORK/agent-$a" >>"$WORK/$a.log" 2>&1 &
  AGENT_PID[$a]=$!
  PIDS+=("$!")
  wait_for 180 grep -q "policy .* received from the broker" "$WORK/$a.log"
}
start_nhis_backend() {
  "$BUILD/agent/sharebus" serve --agent "$(agent_ep nhis)" --dataset "$CHECKUP" \
    --records "$SRC/tests/data/nhis-checkups.json" >>"$WORK/nhis-backend.log" 2>&1 &
  NHIS_BACKEND=$!
  PIDS+=("$NHIS_BACKEND")
  wait_for 120 grep -q "serving $CHECKUP" "$WORK/nhis-backend.log"
}
setup_certs nhis koroad mois nts
setup_policy
start_broker
for a in nhis koroad; do start_agent "$a"; done
start_nhis_backend

expect_error no-consent request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT
grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null
out=$(request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT)
grep -q '"hearing_right":"normal"' <<<"$out" || fail "exchange: $out"
expect_error denied request koroad --provider nhis --dataset $CHECKUP --purpose marketing \
  --subject $SUBJECT
pass "request path under memcheck: refused, granted, answered, denied"

if [ -z "${VG_SHORT:-}" ]; then
  for a in mois nts; do start_agent "$a"; done
  sb subscribe --agent "$(agent_ep nts)" --topic resident.address-changed --count 1 \
    >"$WORK/event.out" 2>>"$WORK/subscriber.log" &
  SUB=$!
  PIDS+=("$SUB")
  sleep 2
  echo '{"new_address": "261 Sejong-daero", "moved_on": "2026-11-20"}' >"$WORK/move.json"
  sb publish --agent "$(agent_ep mois)" --topic resident.address-changed --subject $SUBJECT \
    --record "$WORK/move.json" >/dev/null
  wait "$SUB" || fail "subscriber exited with $?"
  grep -q new_address "$WORK/event.out" || fail "no event: $(cat "$WORK/event.out")"
  sb consent revoke --agent "$(agent_ep koroad)" --subject $SUBJECT --reason withdrawn >/dev/null
  expect_error no-consent request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
    --subject $SUBJECT
  "$BUILD/tests/rogue" --certs "$CERTS" --agency mois --broker "$BROKER" forge >/dev/null
  "$BUILD/tests/rogue" --certs "$CERTS" --agency mois --broker "$BROKER" garbage >/dev/null
  pass "events, revocation and hostile frames under memcheck"
fi

# Stop everything with SIGTERM: a non-zero status is Valgrind's verdict.
kill "$NHIS_BACKEND"; wait "$NHIS_BACKEND" || fail "the back-end exited with status $?"
for a in "${!AGENT_PID[@]}"; do
  kill "${AGENT_PID[$a]}"; wait "${AGENT_PID[$a]}" || fail "agent $a exited with status $?"
done
stop_broker
pass "broker, agents and back-end exited cleanly under memcheck"
