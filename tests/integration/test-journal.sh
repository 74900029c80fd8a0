#!/usr/bin/env bash
# The broker's write-ahead journal. A batch is durable, and what it lets
# leave leaves, once its journal record is written; LMDB commits behind it.
# Here LMDB cannot commit (its map capped at 2 MiB and full) while requests
# are being forwarded, the journal's ring (1 MiB) fills too, and the broker
# is killed with -9: the journal holds records the store does not. The next start (with room) must apply them,
# say so, and leave a log that verifies and holds every request the
# provider received and every reply the consumer received.
source "$(dirname "$0")/lib.sh"
setup_certs nhis koroad mois nts
setup_policy
start_broker --map-max 2 --wal-size 1
for a in nhis koroad; do start_agent "$a"; done
start_nhis_backend
grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null

"$BUILD/tests/load" --agent "$(agent_ep koroad)" --provider nhis --dataset $CHECKUP \
  --purpose $RENEWAL --subject $SUBJECT --fields exam_date --inflight 16 --timeout 1500 \
  >"$WORK/load.out" 2>"$WORK/load.log" &
LOAD=$!
PIDS+=("$LOAD")
wait_for 120 grep -q "audit log cannot be written" "$WORK/broker.log"
# While LMDB cannot commit, the journal's 1 MiB ring fills with the
# refusals' records: then batches fail at once, and the broker still
# answers (status waits for the store, and must not wait forever).
wait_for 60 grep -q "the journal has no room" "$WORK/broker.log"
timeout 20 "$BUILD/broker/sharebus-broker" status --data "$WORK/broker" >"$WORK/status.out" \
  || fail "status does not answer with the journal full"
kill -0 "$BROKER_PID" || fail "the broker died with the journal full"
pass "journal full: the broker refuses and still answers status"
kill -9 "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null || true
kill "$LOAD"; wait "$LOAD" || true
pass "store full, broker killed with -9 under load: $(tr '\n' ' ' <"$WORK/load.out")"

# What LMDB has now lacks what the journal holds.
audit query --data "$WORK/broker" --kind request-routed --json | grep -c '"kind"' \
  >"$WORK/routed-before" || true

skip=$(lines "$WORK/broker.log")
restart_broker --map-max 64
wait_for 10 logged_after "$WORK/broker.log" "$skip" "applied [1-9][0-9]* journal record"
audit query --data "$WORK/broker" --kind request-routed --json | grep -c '"kind"' \
  >"$WORK/routed-after" || true
[ "$(cat "$WORK/routed-after")" -gt "$(cat "$WORK/routed-before")" ] \
  || fail "the journal's replay added no request-routed record to LMDB"
pass "restart: $(tail -n +"$((skip + 1))" "$WORK/broker.log" | grep -o 'applied [0-9]* journal record(s)'); request-routed records $(cat "$WORK/routed-before") before, $(cat "$WORK/routed-after") after"

wait_for 30 request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT --fields exam_date
pass "requests are answered after the restart"
stop_broker
for a in nhis koroad; do kill "${AGENT_PID[$a]}"; wait "${AGENT_PID[$a]}" || true; done
audit verify --data "$WORK/broker" --certs "$CERTS" >/dev/null || fail "the log does not verify"
pass "the audit log verifies"

check_on_record
