#!/usr/bin/env bash
# Every decision the bus makes is one record in the broker's hash-chained
# audit log, the log verifies, and an agency's copy of a checkpoint catches
# a rewritten history.
source "$(dirname "$0")/lib.sh"
TOPIC=resident.address-changed
start_bus
FIX="$BUILD/audit/audit-fixture"

id=$(grant koroad koroad $CHECKUP $RENEWAL 2030-12-31)                       # consent-granted
request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT >/dev/null                                              # request-routed, reply-forwarded
expect_error denied request mois --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT                                                         # request-refused
sb consent revoke --agent "$(agent_ep koroad)" --id "$id" >/dev/null          # consent-revoked
until=$(date -u -d '+2 seconds' +%Y-%m-%dT%H:%M:%SZ)
grant koroad koroad $CHECKUP $RENEWAL "$until" >/dev/null
sleep 3
expect_error no-consent request koroad --provider nhis --dataset $CHECKUP \
  --purpose $RENEWAL --subject $SUBJECT                                      # consent-expired
grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null
rogue mois stranger >/dev/null                                               # agent-refused
"$BUILD/broker/sharebus-broker" reload --data "$WORK/broker" >/dev/null       # policy-loaded
echo "rules: [" >"$WORK/policy/broken.yaml"
! "$BUILD/broker/sharebus-broker" reload --data "$WORK/broker" >/dev/null 2>&1 \
  || fail "a broken policy was accepted"                                     # policy-rejected
rm "$WORK/policy/broken.yaml"
"$BUILD/agent/sharebus" subscribe --agent "$(agent_ep nts)" --topic $TOPIC --count 1 \
  >"$WORK/nts.events" 2>/dev/null &
sub=$!
sleep 0.3
echo '{"new_address":"1 Sejong-daero","moved_on":"2026-11-20"}' \
  | sb publish --agent "$(agent_ep mois)" --topic $TOPIC --subject $SUBJECT --record - >/dev/null
wait $sub                                                                    # event-published, -delivered

# A provider that never answers: the broker times the request out.
kill "${AGENT_PID[nhis]}"; wait "${AGENT_PID[nhis]}" || true
rogue nhis silent 4 >/dev/null &
silent=$!
sleep 0.5
expect_error timeout request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT --timeout 1000                                          # timeout
wait $silent || true

# The agency's copy of the broker's latest checkpoint, then a clean stop.
sleep 1
audit checkpoint --data "$WORK/agent-koroad" --out "$WORK/koroad.cp" >/dev/null
# The agency's copy says when it came, by koroad's clock: after the broker
# signed it, before now. The broker's own copy has no such time.
signed=$(grep -o '"time_ms":[0-9]*' "$WORK/koroad.cp" | cut -d: -f2)
received=$(grep -o '"received_ms":[0-9]*' "$WORK/koroad.cp" | cut -d: -f2)
[ -n "$received" ] && [ "$received" -ge "$signed" ] && [ "$received" -le "$(date +%s%3N)" ] \
  || fail "koroad's copy of the checkpoint has no time of receipt after its signing: $(cat "$WORK/koroad.cp")"
own=$(audit checkpoint --data "$WORK/broker")
case "$own" in
  *'"received'*) fail "the broker's own checkpoint carries a time of receipt: $own" ;;
  *'"seq":'*) ;;
  *) fail "no checkpoint in the broker's log: $own" ;;
esac
pass "koroad's copy of the checkpoint was received $((received - signed)) ms after it was signed"
stop_broker

for kind in broker-started policy-loaded agent-connected consent-granted request-routed \
            reply-forwarded request-refused consent-revoked consent-expired agent-refused \
            policy-rejected event-published event-delivered timeout broker-stopped; do
  n=$(audit query --data "$WORK/broker" --kind $kind --json | wc -l)
  [ "$n" -ge 1 ] || fail "no $kind record"
done
pass "every kind of decision has its record"

out=$(audit query --data "$WORK/broker" --kind request-routed --json)
grep -q "\"consent_id\":\"[0-9a-f]\{32\}\"" <<<"$out" || fail "routed request without its consent id"
grep -q '"rule_id":"licence-renewal-uses-checkup"' <<<"$out" || fail "routed request without rule"
grep -q '"signature":"[0-9a-f]\{128\}"' <<<"$out" || fail "routed request without the sender's signature"
grep -q "$SUBJECT" <<<"$out" && fail "clear national id in the audit log"
pass "a routed request carries rule, consent, subject reference and the sender's signature"

out=$(audit query --data "$WORK/broker" --subject $SUBJECT --subject-key "$CERTS/subject.key" --json)
[ "$(wc -l <<<"$out")" -ge 6 ] || fail "subject query found too little: $out"
pass "query by subject reference"

audit verify --data "$WORK/broker" --certs "$CERTS" --checkpoint "$WORK/koroad.cp" >/dev/null \
  || fail "intact log does not verify"

# A careful forger rewrites history from record 5 on and drops the broker's
# own checkpoints: the log alone looks intact, koroad's checkpoint does not.
"$FIX" rewrite "$WORK/broker" 5 >/dev/null
"$FIX" drop-checkpoints "$WORK/broker" >/dev/null
audit verify --data "$WORK/broker" --certs "$CERTS" >/dev/null \
  || fail "expected the rewritten log to look intact on its own"
if out=$(audit verify --data "$WORK/broker" --certs "$CERTS" --checkpoint "$WORK/koroad.cp" 2>&1); then
  fail "koroad's checkpoint did not catch the rewrite: $out"
fi
grep -qi "checkpoint\|altered" <<<"$out" || fail "verify did not say why: $out"
pass "koroad's checkpoint catches a rewritten history: $(head -1 <<<"$out")"
