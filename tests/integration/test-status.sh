#!/usr/bin/env bash
# Status and metrics tell the traffic of a run exactly: after N answered
# requests and a few refused ones, `sharebus-broker status` and the
# Prometheus endpoint count the same requests by consumer, provider and
# dataset, the refusals by kind, the answers in the latency histogram, the
# event queue of an offline subscriber; and no log line holds a national
# id or a secret key.
source "$(dirname "$0")/lib.sh"
TOPIC=resident.address-changed
N=40
setup_certs nhis koroad mois nts
setup_policy
# Exact counts: the example rule's rate limit must not refuse any of them.
sed -i '/^ *rate:/d' "$WORK/policy/health.yaml"
for try in 1 2 3 4 5; do
  MPORT=$((20000 + RANDOM % 20000))
  start_broker --metrics "127.0.0.1:$MPORT" --log-level debug
  grep -q "metrics on http://127.0.0.1:$MPORT/metrics" "$WORK/broker.log" && break
  stop_broker
done
METRICS=http://127.0.0.1:$MPORT/metrics
for a in nhis koroad mois; do start_agent "$a"; done
start_nhis_backend
grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null

# N answered requests, 3 without consent, 2 for a purpose no rule allows.
"$BUILD/tests/load" --agent "$(agent_ep koroad)" --provider nhis --dataset $CHECKUP \
  --purpose $RENEWAL --subject $SUBJECT --fields exam_date --inflight 4 --count $N 2>"$WORK/load.log" \
  >"$WORK/load.out"
[ "$(cat "$WORK/load.out")" = "$(printf 'answers %d\nok %d' $N $N)" ] \
  || fail "load: $(cat "$WORK/load.out")"
for i in 1 2 3; do
  expect_error no-consent request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
    --subject 111111-111111$i
done
for i in 1 2; do
  expect_error denied request koroad --provider nhis --dataset $CHECKUP --purpose marketing \
    --subject $SUBJECT
done
# One change of address for nts, which is offline: it waits in nts's queue.
echo '{"new_address":"1 Sejong-daero","moved_on":"2026-11-20"}' \
  | sb publish --agent "$(agent_ep mois)" --topic $TOPIC --subject $SUBJECT --record - >/dev/null
pass "traffic: $N answered, 3 without consent, 2 denied, 1 event for an offline agency"

status=$("$BUILD/broker/sharebus-broker" status --data "$WORK/broker" --json)
get() { python3 -c 'import json,sys; d=json.loads(sys.argv[1])
for k in sys.argv[2].split("/"): d=d.get(k, 0) if isinstance(d, dict) else 0
print(d)' "$status" "$1"; }
expect() {  # expect PATH VALUE
  local got; got=$(get "$1")
  [ "$got" = "$2" ] || fail "status $1 = $got, expected $2"
}
TOTAL=$((N + 5))
expect requests/total $TOTAL
expect requests/by_consumer/koroad $TOTAL
expect requests/by_provider/nhis $TOTAL
expect "requests/by_dataset/$CHECKUP" $TOTAL
expect counters/requests.routed $N
expect counters/replies.forwarded $N
expect refusals/no-consent 3
expect refusals/denied 2
expect latency/count $N
expect hold_request/count $N
expect hold_reply/count $N
expect pending_requests 0
expect event_queues/nts 1
KOROAD_SERIAL=$(sed -n 's/^ *serial = "\([0-9]*\)"$/\1/p' "$CERTS/koroad.cert")
expect connections/koroad/serial "$KOROAD_SERIAL"
[ "$(get connections/nts)" = 0 ] || fail "nts is not connected: $(get connections)"
seq=$(get audit_seq)
records=$(audit query --data "$WORK/broker" --json | wc -l)
[ "$seq" = "$records" ] || fail "audit_seq $seq, but the log holds $records records"
[ "$(get store_used_bytes)" -gt 0 ] && [ "$(get store_map_bytes)" -ge "$(get store_used_bytes)" ] \
  || fail "store sizes: $(get store_used_bytes) of $(get store_map_bytes)"
[ "$(get uptime_s)" -ge 0 ] && [ -n "$(get policy_version)" ] || fail "uptime, policy version"
# The histograms' buckets: one count more than bounds, summing to the count.
for h in latency audit_commit hold_request hold_reply; do
  python3 -c 'import json,sys; h=json.loads(sys.argv[1])[sys.argv[2]]
b, c = h["le_ms"], h["counts"]
assert len(c) == len(b) + 1 and b == sorted(b) and b[0] == 0.1 and sum(c) == h["count"] > 0, h' \
    "$status" $h || fail "status $h buckets"
done
pass "status --json: $TOTAL requests by consumer, provider and dataset, $N answered and timed, refusals by kind, queue, audit seq $seq"

human=$("$BUILD/broker/sharebus-broker" status --data "$WORK/broker")
for line in "^connected .*koroad (serial $KOROAD_SERIAL)" "^  by consumer .*koroad $TOTAL" \
            "^  by dataset .*$CHECKUP $TOTAL" "^refusals .*denied 2, no-consent 3" \
            "^event queues .*nts 1" "^audit  *seq $seq" "^latency  *p50 .* over $N answers" \
            "^requests held  *p50 .* over $N forwarded" "^replies held  *p50 .* over $N forwarded"; do
  grep -q "$line" <<<"$human" || fail "status lacks /$line/: $human"
done
pass "status for people"

curl -fsS "$METRICS" >"$WORK/metrics.txt" || fail "GET $METRICS"
metric() {  # metric 'NAME{LABELS}' VALUE
  grep -qxF "$1 $2" "$WORK/metrics.txt" || fail "metrics: want '$1 $2', got: $(grep -F "${1%%\{*}" "$WORK/metrics.txt")"
}
metric "sharebus_requests_total{consumer=\"koroad\",provider=\"nhis\",dataset=\"$CHECKUP\"}" $TOTAL
metric 'sharebus_refusals_total{error="no-consent"}' 3
metric 'sharebus_refusals_total{error="denied"}' 2
metric sharebus_requests_routed_total $N
metric sharebus_replies_forwarded_total $N
metric sharebus_request_duration_seconds_count $N
metric 'sharebus_request_duration_seconds_bucket{le="+Inf"}' $N
metric sharebus_request_hold_seconds_count $N
metric sharebus_reply_hold_seconds_count $N
metric 'sharebus_event_queue_depth{agency="nts"}' 1
metric "sharebus_agency_connected{agency=\"koroad\",serial=\"$KOROAD_SERIAL\"}" 1
metric sharebus_pending_requests 0
grep -q '^# TYPE sharebus_request_duration_seconds histogram$' "$WORK/metrics.txt" || fail "histogram type"
grep -q '^sharebus_audit_commit_duration_seconds_count [1-9]' "$WORK/metrics.txt" || fail "commit histogram"
# Every sample line is NAME{labels} VALUE with a sharebus_ name.
bad=$(grep -v '^#' "$WORK/metrics.txt" | grep -Ev '^sharebus_[a-z0-9_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$' || true)
[ -z "$bad" ] || fail "malformed metric lines: $bad"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/other")
[ "$code" = 404 ] || fail "GET /other: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$METRICS")
[ "$code" = 405 ] || fail "POST /metrics: $code"
pass "metrics: the same counts in the Prometheus text format; 404 and 405 elsewhere"

# Many scrapers at once, and one that never finishes its request: the
# broker keeps serving (and traffic keeps flowing).
exec 3<>"/dev/tcp/127.0.0.1/$MPORT"
printf 'GET /metr' >&3
for i in $(seq 20); do curl -fsS "$METRICS" >/dev/null & done
wait_for 10 curl -fsS "$METRICS"
request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT >/dev/null \
  || fail "request after the scrapes"
exec 3>&-
pass "concurrent and unfinished scrapes"

# Nothing secret in any log: no national id, no secret key.
grep -l -- "$SUBJECT\|111111-111111" "$WORK"/*.log && fail "a national id was logged"
while IFS= read -r secret; do
  ! grep -qF -- "$secret" "$WORK"/*.log || fail "a secret key was logged"
done < <(sed -n 's/^ *secret-key = "\(.*\)"$/\1/p' "$CERTS"/*.key)
pass "no national id or secret key in the logs"

stop_broker
audit verify --data "$WORK/broker" --certs "$CERTS" >/dev/null || fail "audit verify"
