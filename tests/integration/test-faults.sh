#!/usr/bin/env bash
# kill -9 of the broker, then of the provider's agent, during sustained
# traffic, repeated: afterwards the audit log verifies, consents are intact,
# and every reply the requester's agent received is in the broker's log.
source "$(dirname "$0")/lib.sh"
start_bus
grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null
"$BUILD/tests/load" --agent "$(agent_ep koroad)" --provider nhis --dataset $CHECKUP \
  --purpose $RENEWAL --subject $SUBJECT --fields exam_date --inflight 16 --timeout 1500 \
  >"$WORK/load.out" 2>"$WORK/load.log" &
LOAD=$!
PIDS+=("$LOAD")

for round in 1 2 3; do
  sleep "0.$((RANDOM % 9 + 3))"
  kill -9 "$BROKER_PID"
  wait "$BROKER_PID" 2>/dev/null || true
  restart_broker
  audit verify --data "$WORK/broker" --certs "$CERTS" >/dev/null \
    || fail "audit log does not verify after kill -9 number $round"
  pass "kill -9 of the broker, round $round: log verifies"
done
for round in 1 2; do
  sleep "0.$((RANDOM % 9 + 3))"
  kill -9 "${AGENT_PID[nhis]}"
  wait "${AGENT_PID[nhis]}" 2>/dev/null || true
  kill "$NHIS_BACKEND" 2>/dev/null || true
  start_agent nhis
  start_nhis_backend
  pass "kill -9 of the provider's agent, round $round"
done
sleep 1
kill "$LOAD"
wait "$LOAD" || true
grep -q '^ok [1-9]' "$WORK/load.out" || fail "no request succeeded: $(cat "$WORK/load.out")"
pass "traffic flowed: $(tr '\n' ' ' <"$WORK/load.out")"

# (The rule allows 50/s: the load has emptied the bucket; wait for it.)
wait_for 10 request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT
sb consent list --agent "$(agent_ep koroad)" --subject $SUBJECT --json | grep -q '"state":"active"' \
  || fail "consent lost"
pass "consents intact"

stop_broker
kill "${AGENT_PID[koroad]}"; wait "${AGENT_PID[koroad]}" || true
audit verify --data "$WORK/broker" --certs "$CERTS" || fail "final verify"

# Every reply koroad's agent received from nhis crossed the broker, which
# forwards nothing before its audit record is committed.
audit query --data "$WORK/agent-koroad" --agency nhis --kind message-received --json \
  | grep -o '"correlation_id":"[0-9a-f]\{32\}"' | sort -u >"$WORK/received"
audit query --data "$WORK/broker" --kind reply-forwarded --json \
  | grep -o '"correlation_id":"[0-9a-f]\{32\}"' | sort -u >"$WORK/forwarded"
[ -s "$WORK/received" ] || fail "koroad's agent logged no replies"
missing=$(comm -23 "$WORK/received" "$WORK/forwarded" | wc -l)
[ "$missing" -eq 0 ] || fail "$missing replies received without a broker audit record"
pass "all $(wc -l <"$WORK/received") replies received are in the broker's audit log"
