#!/usr/bin/env bash
# The request/reply path through the real broker and agents: the allowed
# exchange returns exactly the allowed fields, and each refusal has its kind.
source "$(dirname "$0")/lib.sh"
start_bus

expect_error no-consent request koroad --provider nhis --dataset $CHECKUP \
  --purpose $RENEWAL --subject $SUBJECT
pass "no consent: refused"

id=$(grant koroad koroad $CHECKUP $RENEWAL 2030-12-31)
[[ $id =~ ^[0-9a-f]{32}$ ]] || fail "consent id: $id"

out=$(request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT)
for f in exam_date vision_left vision_right hearing_left hearing_right; do
  grep -q "\"$f\"" <<<"$out" || fail "field $f missing: $out"
done
grep -q blood_pressure <<<"$out" && fail "blood_pressure is not in the rule but flowed: $out"
grep -q '"vision_left":1' <<<"$out" || fail "wrong value: $out"
pass "allowed exchange returns exactly the rule's fields"

out=$(request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject "900101 1234567" --fields exam_date,vision_left)
[ "$out" = '{"exam_date":"2025-10-02","vision_left":1}' ] || fail "subset: $out"
pass "a subset of fields returns only that subset"

expect_error denied request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT --fields exam_date,blood_pressure
pass "field outside the rule: denied"

for t in 0 60001 4294967297; do
  rc=0
  request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
    --timeout $t >/dev/null 2>&1 || rc=$?
  [ $rc = 2 ] || fail "--timeout $t: exit $rc, expected 2 (a usage error)"
done
pass "a --timeout outside 1..60000 ms: a usage error"
for d in -1 60001 x ""; do
  rc=0
  sb serve --agent "$(agent_ep nhis)" --dataset $CHECKUP --records "$SRC/tests/data/nhis-checkups.json" \
    --delay "$d" >/dev/null 2>&1 || rc=$?
  [ $rc = 2 ] || fail "serve --delay '$d': exit $rc, expected 2 (a usage error)"
done
pass "a serve --delay outside 0..60000 ms: a usage error"

# 64 field names of 128 characters: each valid, together a header over
# 8 KiB. Too big (retrying would not help), not unavailable.
long_fields=$(python3 -c 'print(",".join("f%03d" % i + "x" * 124 for i in range(64)))')
expect_error too-big request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT --fields "$long_fields"
pass "a request whose header is over 8 KiB: too-big"

expect_error denied request koroad --provider nhis --dataset $CHECKUP --purpose marketing \
  --subject $SUBJECT
pass "wrong purpose: denied"

expect_error unknown-dataset request koroad --provider nhis --dataset health.dental \
  --purpose $RENEWAL --subject $SUBJECT
pass "unknown dataset: unknown-dataset"

expect_error denied request mois --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT
pass "consumer without a rule: denied"

grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null
sb consent grant --agent "$(agent_ep koroad)" --subject 111111-1111111 --consumer koroad \
  --dataset $CHECKUP --purpose $RENEWAL --until 2030-12-31 >/dev/null
expect_error not-found request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject 111111-1111111
pass "subject unknown to the provider: not-found"

# A reply over 1 MiB: the consumer is told too-big (not left to time out),
# and the provider's back-end (sb_client_run) goes on serving.
kill "$NHIS_BACKEND"; wait "$NHIS_BACKEND" 2>/dev/null || true
python3 - "$SRC/tests/data/nhis-checkups.json" "$WORK/big-checkups.json" <<'EOF'
import json, sys
records = json.load(open(sys.argv[1]))
records["111111-1111111"] = {"exam_date": "x" * (700 * 1024), "hearing_left": "y" * (700 * 1024)}
json.dump(records, open(sys.argv[2], "w"))
EOF
"$BUILD/agent/sharebus" serve --agent "$(agent_ep nhis)" --dataset "$CHECKUP" \
  --records "$WORK/big-checkups.json" >>"$WORK/nhis-backend.log" 2>&1 &
NHIS_BACKEND=$!
PIDS+=("$NHIS_BACKEND")
wait_for 10 request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT
expect_error too-big request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject 111111-1111111 --fields exam_date,hearing_left
request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT >/dev/null \
  || fail "the provider's back-end stopped serving after a reply over 1 MiB"
pass "a reply over 1 MiB: too-big to the consumer, the provider serves on"

# The deadline holds between the back-end and its agent: a request that
# reaches the agent after it (the agent was stopped; the library had
# queued it) is answered timeout and never sent, so nothing the back-end
# no longer waits for is asked for, routed and audited on its behalf.
# Requests routed since TIME_MS (the broker's records, in LMDB).
routed_since() {
  audit query --data "$WORK/broker" --kind request-routed --json \
    | grep -o '"time_ms":[0-9]*' | cut -d: -f2 | awk -v t="$1" '$1 >= t' | wc -l
}
routed_more() { [ "$(routed_since "$1")" -gt 0 ]; }
kill -STOP "${AGENT_PID[koroad]}"
"$BUILD/tests/load" --agent "$(agent_ep koroad)" --provider nhis --dataset $CHECKUP \
  --purpose $RENEWAL --subject $SUBJECT --fields exam_date --inflight 1 --count 1 \
  --timeout 200 >"$WORK/late.out" 2>"$WORK/late.log" &
LATE=$!
PIDS+=("$LATE")
sleep 2
resumed=$(date +%s%3N)
kill -CONT "${AGENT_PID[koroad]}"
wait "$LATE" || fail "load: $(cat "$WORK/late.log")"
grep -c '^timeout 1$' "$WORK/late.out" >/dev/null \
  || fail "a request past its deadline was carried out: $(tr '\n' ' ' <"$WORK/late.out")"
request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT >/dev/null
wait_for 5 routed_more "$resumed"
n=$(routed_since "$resumed")
[ "$n" -eq 1 ] || fail "$((n - 1)) request(s) routed after their deadline"
pass "a request that reaches the agent after its deadline: timeout, not sent"

# A second back-end serves the dataset: it takes over once, and the two do
# not take turns at each registration refresh (every 2 s).
before=$(grep -c "a back-end now serves" "$WORK/nhis.log")
"$BUILD/agent/sharebus" serve --agent "$(agent_ep nhis)" --dataset "$CHECKUP" \
  --records "$SRC/tests/data/nhis-checkups.json" >>"$WORK/nhis-backend2.log" 2>&1 &
SECOND=$!
PIDS+=("$SECOND")
sleep 5
after=$(grep -c "a back-end now serves" "$WORK/nhis.log")
[ $((after - before)) = 1 ] || fail "two back-ends of one dataset: $((after - before)) changes in 5 s"
kill "$SECOND"; wait "$SECOND" 2>/dev/null || true
pass "a second back-end takes the dataset over once, not at every refresh"

# The provider's back-end goes away: the next request is unavailable.
kill "$NHIS_BACKEND"; wait "$NHIS_BACKEND" 2>/dev/null || true
sleep 0.2
# The agent still has the back-end's routing id; the answer is unavailable
# (back-end gone) or timeout, within the deadline.
out=$(request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
  --timeout 1500 2>&1) && fail "request without a provider back-end succeeded: $out"
grep -Eq "^error: (unavailable|timeout):" <<<"$out" || fail "no back-end: $out"
pass "provider back-end gone: $(cut -d: -f2 <<<"$out" | tr -d ' ')"

# The provider's agent is killed: unavailable, and the broker stays up.
kill -9 "${AGENT_PID[nhis]}"
sleep 0.3
out=$(request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
  --timeout 1500 2>&1) && fail "request to a dead provider succeeded: $out"
grep -Eq "^error: (unavailable|timeout):" <<<"$out" || fail "dead provider: $out"
kill -0 "$BROKER_PID" || fail "broker died"
pass "provider agent killed: $(cut -d: -f2 <<<"$out" | tr -d ' '), broker still up"

# And it comes back: a restarted agent and back-end are served again.
start_agent nhis
start_nhis_backend
wait_for 10 request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT
pass "restarted provider is served again"

# The broker stops (SIGTERM) while nhis is answering: the request in
# flight is answered unavailable at once, and closed on the record, not
# left to the consumer's deadline with a request-routed that nothing ends.
kill "$NHIS_BACKEND"; wait "$NHIS_BACKEND" 2>/dev/null || true
"$BUILD/agent/sharebus" serve --agent "$(agent_ep nhis)" --dataset "$CHECKUP" \
  --records "$SRC/tests/data/nhis-checkups.json" --delay 5000 >"$WORK/slow.log" 2>&1 &
SLOW=$!
PIDS+=("$SLOW")
wait_for 10 grep -q "serving $CHECKUP" "$WORK/slow.log"
resumed=$(date +%s%3N)
request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
  --timeout 30000 >"$WORK/stopped.out" 2>&1 &
ASK=$!
wait_for 10 routed_more "$resumed"
stop_broker
pass "broker stops cleanly on SIGTERM"
wait "$ASK" && fail "a request answered by a stopped broker: $(cat "$WORK/stopped.out")"
grep -c "^error: unavailable: the broker stopped before nhis answered" "$WORK/stopped.out" >/dev/null \
  || fail "a request in flight when the broker stopped: $(cat "$WORK/stopped.out")"
audit query --data "$WORK/broker" --kind reply-refused --json \
  | grep -c '"reason":"the broker stopped before nhis answered"' >/dev/null \
  || fail "no record closes the request in flight when the broker stopped"
pass "a request in flight when the broker stops: unavailable at once, and on the record"

# The broker is killed (-9) while nhis is answering: the restarted broker
# takes the request back from its record (routed in the last minute, not
# ended), so the answer that comes after the restart is forwarded and
# audited rather than refused as answering nothing.
connected() {  # SKIP: both agents said hello to the broker since line SKIP
  logged_after "$WORK/broker.log" "$1" "nhis connected" \
    && logged_after "$WORK/broker.log" "$1" "koroad connected"
}
skip=$(lines "$WORK/broker.log")
restart_broker
wait_for 10 connected "$skip"
resumed=$(date +%s%3N)
request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
  --fields exam_date --timeout 30000 >"$WORK/killed.out" 2>&1 &
ASK=$!
wait_for 10 routed_more "$resumed"
kill -9 "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null || true
skip=$(lines "$WORK/broker.log")
restart_broker
wait_for 10 connected "$skip"
wait "$ASK" || fail "a request in flight across a kill -9 of the broker: $(cat "$WORK/killed.out")"
grep -c '"exam_date"' "$WORK/killed.out" >/dev/null || fail "no record: $(cat "$WORK/killed.out")"
stop_broker
n=$(audit query --data "$WORK/broker" --kind reply-forwarded --json \
  | grep -o '"time_ms":[0-9]*' | cut -d: -f2 | awk -v t="$resumed" '$1 >= t' | wc -l)
[ "$n" -eq 1 ] || fail "$n reply-forwarded records for the request across the kill -9"
audit verify --data "$WORK/broker" --certs "$CERTS" >/dev/null || fail "the log does not verify"
pass "a request in flight across a kill -9 of the broker: answered after the restart, on the record"

# An agent stops (SIGTERM) with calls in flight: whoever waits on it is
# answered unavailable at once, not left to the deadline (here 30 s).
skip=$(lines "$WORK/broker.log")
restart_broker
wait_for 10 connected "$skip"
ask_slowly() {  # OUTFILE: a request nhis's slow back-end takes 5 s to answer
  resumed=$(date +%s%3N)
  request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
    --fields exam_date --timeout 30000 >"$1" 2>&1 &
  ASK=$!
  wait_for 10 routed_more "$resumed"
}
stop_under_request() {  # AGENCY EXPECTED: AGENCY's agent stops while koroad waits
  local out="$WORK/$1-stop.out"
  ask_slowly "$out"
  kill "${AGENT_PID[$1]}"; wait "${AGENT_PID[$1]}" || true
  wait "$ASK" && fail "answered by a stopped agent: $(cat "$out")"
  grep -c "^error: unavailable: $2" "$out" >/dev/null || fail "$1's agent stopped: $(cat "$out")"
}
stop_under_request koroad "the agent of koroad stopped before the answer came"
pass "the consumer's agent stops: its back-end is answered unavailable at once"
start_agent koroad
stop_under_request nhis "the agent of nhis stopped before its back-end answered"
pass "the provider's agent stops: the consumer is answered unavailable at once"

# A provider's back-end that falls behind skips the requests whose deadline
# passed while they waited for it (the broker has answered them timeout):
# its handler is not run for nobody, and it catches up.
kill "$SLOW"; wait "$SLOW" 2>/dev/null || true
start_agent nhis
"$BUILD/agent/sharebus" serve --agent "$(agent_ep nhis)" --dataset "$CHECKUP" \
  --records "$SRC/tests/data/nhis-checkups.json" --delay 4000 >"$WORK/behind.log" 2>&1 &
PIDS+=("$!")
wait_for 10 grep -q "serving $CHECKUP" "$WORK/behind.log"
for i in 1 2; do
  request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
    --fields exam_date --timeout 2000 >/dev/null 2>&1 &
  PIDS+=("$!")
done
sleep 0.5
request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
  --fields exam_date --timeout 20000 >/dev/null || fail "the request after the late ones"
n=$(grep -c "answered $CHECKUP" "$WORK/behind.log")
[ "$n" -eq 2 ] || fail "the slow back-end ran its handler $n times for 1 request on time and 2 late"
pass "a back-end that falls behind skips the requests whose deadline passed"
