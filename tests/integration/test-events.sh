#!/usr/bin/env bash
# Proactive sharing: mois publishes a change of address; every subscriber
# the policy names receives its own view, in order, even after being
# offline; nothing acknowledged is lost or delivered twice across a kill -9.
source "$(dirname "$0")/lib.sh"
TOPIC=resident.address-changed
start_bus --queue-max 50

subscribe() {  # subscribe AGENCY OUTFILE
  "$BUILD/agent/sharebus" subscribe --agent "$(agent_ep "$1")" --topic $TOPIC >>"$2" \
    2>>"$WORK/subscriber-$1.log" &
  PIDS+=("$!")
  echo $!
}
publish() {  # publish N: the Nth change of address
  echo "{\"new_address\":\"$1 Sejong-daero\",\"moved_on\":\"2026-11-$((10 + $1 % 10))\",\"previous_address\":\"secret $1\"}" \
    | sb publish --agent "$(agent_ep mois)" --topic $TOPIC --subject $SUBJECT --record -
}
count() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
has_lines() { [ "$(count "$1")" -ge "$2" ]; }

# koroad is offline while mois publishes; nts is online.
kill "${AGENT_PID[koroad]}"; wait "${AGENT_PID[koroad]}" || true
subscribe nts "$WORK/nts.events" >/dev/null   # in this shell, so that cleanup stops it
sleep 0.5
for i in 1 2 3 4 5; do publish $i >/dev/null || fail "publish $i"; done
wait_for 10 has_lines "$WORK/nts.events" 5
grep -q previous_address "$WORK/nts.events" && fail "a field beyond nts's allowance reached it"
grep -q '"moved_on"' "$WORK/nts.events" || fail "nts should see moved_on: $(head -1 "$WORK/nts.events")"
[ "$(grep -o '"new_address":"[0-9]' "$WORK/nts.events" | cut -d'"' -f4 | tr -d '\n')" = 12345 ] \
  || fail "nts events out of order: $(cat "$WORK/nts.events")"
grep -q "\"subject\":\"$SUBJECT\"" "$WORK/nts.events" || fail "subject id missing"
pass "nts received 5 events in order, with only new_address and moved_on"

# koroad comes back: it catches up, in order, with only new_address.
start_agent koroad
subscribe koroad "$WORK/koroad.events" >/dev/null
wait_for 20 has_lines "$WORK/koroad.events" 5
grep -q moved_on "$WORK/koroad.events" && fail "moved_on reached koroad"
[ "$(grep -o '"new_address":"[0-9]' "$WORK/koroad.events" | cut -d'"' -f4 | tr -d '\n')" = 12345 ] \
  || fail "koroad events out of order: $(cat "$WORK/koroad.events")"
pass "offline subscriber koroad caught up: 5 events in order, only new_address"

# koroad's subscription is withdrawn while it is offline: what was queued
# for it is dropped from its queue when it comes back, not delivered, each
# recorded as event-refused.
kill "${AGENT_PID[koroad]}"; wait "${AGENT_PID[koroad]}" || true
refused=$(audit query --data "$WORK/broker" --kind event-refused --agency koroad --json | wc -l)
publish 6 >/dev/null || fail "publish 6"
publish 7 >/dev/null || fail "publish 7"
sed -i '/{agency: koroad,/d' "$WORK/policy/events.yaml"
"$BUILD/broker/sharebus-broker" reload --data "$WORK/broker" >/dev/null || fail "reload"
start_agent koroad
subscribe koroad "$WORK/koroad-after.events" >/dev/null
withdrawn() {
  [ "$(audit query --data "$WORK/broker" --kind event-refused --agency koroad --json \
       | grep -c "dropped from the queue of koroad: koroad does not subscribe to $TOPIC")" -ge 2 ]
}
wait_for 20 withdrawn
sleep 1
[ "$(count "$WORK/koroad-after.events")" = 0 ] \
  || fail "events of a withdrawn subscription delivered: $(cat "$WORK/koroad-after.events")"
depth=$("$BUILD/broker/sharebus-broker" status --data "$WORK/broker" --json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["event_queues"].get("koroad", 0))')
[ "$depth" = 0 ] || fail "koroad's queue still holds $depth events"
pass "a subscription withdrawn while its subscriber was offline: its queue dropped, not delivered"

# The citizen's access report tells each subscriber's view in one line: a
# publication with its delivery, or with its withdrawal from the queue.
citizen_report() {
  printf '%s\n' "$SUBJECT" | audit report --data "$WORK/broker" --subject - \
    --subject-key "$CERTS/subject.key" --certs "$CERTS"
}
nts_all_delivered() {  # every view published for nts is told with its delivery
  [ "$(citizen_report | grep -c "published $TOPIC about you for nts")" = 0 ]
}
wait_for 10 nts_all_delivered
report=$(citizen_report)
[ "$(grep -c "^.*koroad.* received $TOPIC (new_address) from mois" <<<"$report")" -ge 5 ] \
  || fail "report: koroad's 5 deliveries: $report"
[ "$(grep -c "mois.* published $TOPIC about you for koroad.*: not delivered, nothing was shared: .*dropped from the queue of koroad" <<<"$report")" = 2 ] \
  || fail "report: koroad's 2 withdrawn events: $report"
[ "$(grep -c "nts received $TOPIC (new_address, moved_on) from mois" <<<"$report")" -ge 7 ] \
  || fail "report: nts's 7 deliveries: $report"
pass "the citizen's report: one line per subscriber's view, delivered or withdrawn"

# nhis subscribes to the topic too but has no back-end listening: its queue
# grows while the others keep receiving (a slow subscriber holds up no one).
expect_error denied sh -c "echo '{\"new_address\":\"x\"}' | \"$BUILD/agent/sharebus\" publish \
  --agent $(agent_ep nts) --topic $TOPIC --subject $SUBJECT --record -"
pass "unauthorised publisher: denied"

# The broker cannot take a publication before its deadline (stopped here):
# mois's back-end is answered timeout, and the views, read by the broker
# only later, are refused as stale instead of queued, so that publishing
# again does not bring the subscribers the change twice.
kill -STOP "$BROKER_PID"
expect_error timeout publish 6
resumed=$(date +%s%3N)
kill -CONT "$BROKER_PID"
publish 7 >/dev/null || fail "publish 7"
published_since() {  # the publications (correlation ids) queued since TIME_MS
  audit query --data "$WORK/broker" --kind event-published --json \
    | awk -v t="$1" 'match($0, /"time_ms":[0-9]+/) && substr($0, RSTART + 10, RLENGTH - 10) + 0 >= t' \
    | grep -o '"correlation_id":"[0-9a-f]*"' | sort -u | wc -l
}
published_more() { [ "$(published_since "$1")" -gt 0 ]; }
wait_for 10 published_more "$resumed"
n=$(published_since "$resumed")
[ "$n" -eq 1 ] || fail "$((n - 1)) publication(s) queued after mois was answered timeout"
pass "a publication the broker reads after its deadline: timeout to the publisher, never queued"

# kill -9 of the broker while mois publishes: every publication mois saw
# acknowledged reaches nts exactly once.
acked=$(count "$WORK/nts.events")
for i in $(seq 8 25); do
  if publish $i >/dev/null 2>&1; then acked=$((acked + 1)); fi
  if [ "$i" = 12 ]; then
    kill -9 "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true
    restart_broker --queue-max 50
  fi
done
wait_for 30 has_lines "$WORK/nts.events" "$acked"
sleep 1
ids=$(grep -o '"id":"[0-9a-f]*"' "$WORK/nts.events")
[ "$(sort <<<"$ids" | uniq -d | wc -l)" -eq 0 ] || fail "an event reached nts twice"
got=$(count "$WORK/nts.events")
[ "$got" -ge "$acked" ] || fail "nts got $got events, mois saw $acked acknowledged"
pass "kill -9 of the broker: $acked acknowledged publications, nts got $got, none twice"

# A subscriber that cannot write an event out (its output is a full disk)
# stops with an error and does not acknowledge it: the next one gets it.
out=$("$BUILD/agent/sharebus" subscribe --agent "$(agent_ep nhis)" --topic $TOPIC --count 1 \
  2>&1 >/dev/full) && fail "subscribe to a full disk succeeded: $out"
grep -q "^error: .*No space left on device" <<<"$out" || fail "no write error told: $out"
first=$("$BUILD/agent/sharebus" subscribe --agent "$(agent_ep nhis)" --topic $TOPIC --count 1) \
  || fail "subscribe nhis"
grep -q '"new_address":"1 Sejong-daero"' <<<"$first" \
  || fail "the event that could not be written was acknowledged: nhis got $first"
pass "an event that cannot be written out is not acknowledged"

# nhis's queue holds every event (nobody acknowledges them now) up to the bound,
# then publishing reports the full queue instead of dropping silently.
for i in $(seq 26 60); do publish $i >/dev/null 2>&1 || break; done
expect_error full publish 99
grep -q "queue of nhis is full" "$WORK/broker.log" || fail "full queue not logged"
stop_broker
# (Captured first: grep -q would end the pipe early, and pipefail would count it.)
out=$(audit query --data "$WORK/broker" --kind event-queue-full --json)
grep -q '"to":"nhis"' <<<"$out" || fail "full queue not audited"
n=$(audit query --data "$WORK/broker" --kind event-delivered --agency nts --json | wc -l)
[ "$n" -ge "$acked" ] || fail "only $n deliveries to nts audited"
out=$(audit query --data "$WORK/broker" --kind event-published --json)
grep -q '"from":"mois"' <<<"$out" || fail "publications not audited"
pass "full queue reported in log and audit; publications and deliveries audited"

