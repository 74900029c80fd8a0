#!/usr/bin/env bash
# An agency that was offline a long time catches up on more events than
# its agent's store first has room for: the agent's map grows as it goes,
# every event reaches the back-end once and in order, and the broker's
# queue empties. The queue is written into the stopped broker's store by
# bench/events (in the broker's own layout), so that the test does not
# have to publish tens of thousands of events one by one first.
source "$(dirname "$0")/lib.sh"
N=${SB_CATCHUP_EVENTS:-70000}
TOPIC=resident.address-changed
setup_certs mois nts
setup_policy
start_broker
stop_broker
"$BUILD/bench/events" load --data "$WORK/broker" --certs "$CERTS" --publisher mois \
  --subscriber nts --topic $TOPIC --count "$N" >"$WORK/load.json" 2>"$WORK/load.log" \
  || fail "loading the queue: $(tail -1 "$WORK/load.log")"
pass "$N events queued for nts while it was offline"

restart_broker
start_agent nts
"$BUILD/bench/events" receive --agent "$(agent_ep nts)" --topic $TOPIC --count "$N" \
  --timeout 60 >"$WORK/received.json" 2>"$WORK/receive.log" \
  || fail "catching up: $(cat "$WORK/received.json") $(tail -3 "$WORK/nts.log")"
grep -q "\"received\":$N," "$WORK/received.json" || fail "received: $(cat "$WORK/received.json")"
grep -q '"in_order":true' "$WORK/received.json" || fail "out of order: $(cat "$WORK/received.json")"
pass "the back-end received all $N events, in order: $(cat "$WORK/received.json")"

grep -q "store map grown" "$WORK/nts.log" || fail "the agent's store never had to grow: use more events"
! grep -q "commit failed" "$WORK/nts.log" || fail "$(grep -m1 'commit failed' "$WORK/nts.log")"
pass "the agent's store grew as it filled ($(grep -c 'store map grown' "$WORK/nts.log") times), no batch failed"

# Every acknowledgement reaches the broker: its queue for nts empties.
depth() {
  "$BUILD/broker/sharebus-broker" status --data "$WORK/broker" --json \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["event_queues"].get("nts", 0))'
}
queue_empty() { [ "$(depth)" = 0 ]; }
wait_for 30 queue_empty
pass "the broker's queue for nts is empty"
audit verify --data "$WORK/broker" --certs "$CERTS" >/dev/null || fail "the broker's log does not verify"
delivered=$(audit query --data "$WORK/broker" --kind event-delivered --json | wc -l)
[ "$delivered" -ge "$N" ] || fail "$delivered deliveries audited, expected $N"
pass "the broker's log verifies and holds $delivered audited deliveries"
