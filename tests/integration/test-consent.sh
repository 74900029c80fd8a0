#!/usr/bin/env bash
# Consent: no data flows under a consent-required rule without an active
# consent of that citizen for that consumer, dataset and purpose.
source "$(dirname "$0")/lib.sh"
start_bus
FIT=health.fit-to-drive
ask() { request koroad --provider nhis --dataset "${1:-$CHECKUP}" --purpose "${2:-$RENEWAL}" \
  --subject $SUBJECT --fields exam_date; }

expect_error no-consent ask
pass "no consent: refused"

grant koroad koroad $CHECKUP driver-licence-aptitude-review 2030-12-31 >/dev/null 2>&1 \
  && fail "a consent for a purpose no rule allows was accepted"
expect_error denied grant koroad koroad $CHECKUP driver-licence-aptitude-review 2030-12-31
pass "consent for a purpose no rule has: denied at grant"

grant koroad koroad $FIT driver-licence-renewal 2030-12-31 >/dev/null
expect_error no-consent ask
pass "consent for another dataset: refused"

sb consent grant --agent "$(agent_ep koroad)" --subject 850315-2345678 --consumer koroad \
  --dataset $CHECKUP --purpose $RENEWAL --until 2030-12-31 >/dev/null
expect_error no-consent ask
pass "consent of another citizen: refused"

expect_error denied grant mois koroad $CHECKUP $RENEWAL 2030-12-31
pass "consent recorded by an agency the policy does not allow: denied"
grant mois koroad $FIT driver-licence-aptitude-review 2030-12-31 >/dev/null
pass "consent recorded by an agency the rule names (consent_by): accepted"

out=$(rogue koroad forged-consent)
[ "$out" = "answer: bad-signature" ] || fail "forged consent signature: $out"
pass "forged consent signature: bad-signature"

# An expiring consent: active, then refused once its time has passed.
until=$(date -u -d '+3 seconds' +%Y-%m-%dT%H:%M:%SZ)
grant koroad koroad $CHECKUP $RENEWAL "$until" >/dev/null
ask >/dev/null || fail "consent valid for 3 s not honoured"
sleep 4
# Several requests at once find it expired: one consent-expired record.
expired_before=$(audit query --data "$WORK/broker" --kind consent-expired --json | grep -c '"kind"' || true)
rogue koroad asks 5 $SUBJECT >/dev/null
expect_error no-consent ask
sb consent list --agent "$(agent_ep koroad)" --subject $SUBJECT --json | grep -q '"state":"expired"' \
  || fail "expired consent not listed as expired"
expired_after=$(audit query --data "$WORK/broker" --kind consent-expired --json | grep -c '"kind"' || true)
[ $((expired_after - expired_before)) = 1 ] \
  || fail "one consent expired, $((expired_after - expired_before)) consent-expired records"
pass "expired consent: refused, listed as expired, recorded once"

id=$(grant koroad koroad $CHECKUP $RENEWAL 2030-12-31)
ask >/dev/null || fail "active consent not honoured"
sb consent revoke --agent "$(agent_ep koroad)" --id "$id" --reason "citizen withdrew" >/dev/null
expect_error no-consent ask
pass "revoked: refused from the next request on"

# A reason over 1024 bytes: refused by the library, and by the broker from
# an agency that skips the library (such a reason once made an audit record
# the store refused for ever, with the broker refusing all traffic).
long=$(head -c 1100 /dev/zero | tr '\0' r)
expect_error invalid sb consent revoke --agent "$(agent_ep koroad)" --id "$id" --reason "$long"
out=$(sb consent grant --agent "$(agent_ep koroad)" --subject $SUBJECT --consumer koroad \
  --dataset $CHECKUP --purpose $RENEWAL --until 2030-12-31 --evidence "$long" 2>&1) \
  && fail "a consent with 1100 bytes of evidence was recorded"
grep -q "^error: invalid: evidence over 1024 bytes" <<<"$out" || fail "long evidence: $out"
out=$(rogue koroad long-revoke 70000)
[ "$out" = "answer: malformed" ] || fail "revocation with a 70,000-byte reason: $out"
sb consent list --agent "$(agent_ep koroad)" --subject $SUBJECT --json >/dev/null \
  || fail "the broker stopped answering after a long revocation reason"
pass "a revocation reason over 1024 bytes: invalid from the library, malformed at the broker"

# 100 revocations at once from one agency: each waits for the store on the
# broker's loop, so beyond 40 at once (20 a second) they are rate-limited.
sleep 2   # a full bucket
out=$(rogue koroad revokes 100)
found=$(awk '$1 == "not-found" {print $2}' <<<"$out")
limited=$(awk '$1 == "rate-limited" {print $2}' <<<"$out")
[ "${found:-0}" -ge 40 ] && [ "${found:-0}" -le 50 ] && [ "${limited:-0}" -ge 50 ] \
  || fail "100 revocations at once: $(tr '\n' ' ' <<<"$out")"
sb consent list --agent "$(agent_ep koroad)" --subject $SUBJECT --json >/dev/null \
  || fail "consent operations stopped after a burst"
pass "100 revocations at once: $found answered, $limited rate-limited"

list=$(sb consent list --agent "$(agent_ep koroad)" --subject $SUBJECT --json)
grep -q "\"id\":\"$id\",.*\"state\":\"revoked\"" <<<"$list" || fail "revoked consent: $list"
grep -q '"reason":"citizen withdrew"' <<<"$list" || fail "revocation history: $list"
pass "list shows state and history"

# Revoking by subject and purpose; a broker restart keeps every consent.
id2=$(grant koroad koroad $CHECKUP $RENEWAL 2030-12-31)
before=$(sb consent list --agent "$(agent_ep koroad)" --subject $SUBJECT --json)
stop_broker
restart_broker
wait_for 20 ask
after=$(sb consent list --agent "$(agent_ep koroad)" --subject $SUBJECT --json)
[ "$before" = "$after" ] || fail "consents changed across a restart: $before / $after"
pass "broker restart keeps every consent"

out=$(sb consent revoke --agent "$(agent_ep koroad)" --subject $SUBJECT --dataset $CHECKUP \
  --purpose $RENEWAL)
grep -q "revoked 1 consent" <<<"$out" || fail "revoke by match: $out"
expect_error no-consent ask
expect_error not-found sb consent revoke --agent "$(agent_ep koroad)" --id "$id2"
pass "revoke by subject and purpose"

# An agency that may not manage a citizen's consent: by id, denied; by
# subject, not-found, as if there were none (it must not learn that the
# citizen consented to another agency).
id3=$(grant koroad koroad $CHECKUP $RENEWAL 2030-12-31)
expect_error denied sb consent revoke --agent "$(agent_ep mois)" --id "$id3"
expect_error not-found sb consent revoke --agent "$(agent_ep mois)" --subject $SUBJECT \
  --dataset $CHECKUP --purpose $RENEWAL
ask >/dev/null || fail "a refused revocation revoked the consent"
pass "revoking another agency's consent: denied by id, not-found by subject"

# Consent revoked while nhis is answering: the answer is withheld at the
# broker (consent is checked again when a reply is released), recorded as
# refused, and koroad gets no-consent instead of the data.
restart_nhis_backend --delay 3000
slow=$(lines "$WORK/nhis-backend.log")
grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null
count() { audit query --data "$WORK/broker" --kind "$1" --json | wc -l; }
more() { [ "$(count "$1")" -gt "$2" ]; }
forwarded=$(count request-routed)
refused=$(count reply-refused)
request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
  --fields exam_date --timeout 10000 >"$WORK/inflight.out" 2>&1 &
ASK=$!
wait_for 5 more request-routed "$forwarded"
sb consent revoke --agent "$(agent_ep koroad)" --subject $SUBJECT --dataset $CHECKUP \
  --purpose $RENEWAL --reason "changed my mind" >/dev/null
wait "$ASK" && fail "data released after its consent was revoked: $(cat "$WORK/inflight.out")"
grep -q "^error: no-consent: nhis answered, and the consent ended before the answer could be released" \
  "$WORK/inflight.out" || fail "a reply withheld for consent: $(cat "$WORK/inflight.out")"
logged_after "$WORK/nhis-backend.log" "$slow" "answered $CHECKUP for koroad" \
  || fail "the slow back-end did not answer"
audit query --data "$WORK/broker" --kind reply-refused --json | tail -n +$((refused + 1)) \
  | grep -c "\"reason\":\"consent [0-9a-f]\{32\} was revoked before the reply was released\"" >/dev/null \
  || fail "no reply-refused record naming the revoked consent"
restart_nhis_backend
pass "consent revoked while the provider answered: the reply is withheld, koroad gets no-consent"
# In the citizen's report that request is one line, with the records of
# the stopped answer (one told to nhis, one to koroad).
report=$(printf '%s\n' "$SUBJECT" | audit report --data "$WORK/broker" --subject - \
  --subject-key "$CERTS/subject.key" --certs "$CERTS")
line=$(grep -A1 "the answer was stopped, nothing was shared: .*was revoked before the reply was released" \
  <<<"$report" | tail -1)
grep -c "audit records [0-9]*, [0-9]* and [0-9]*$" <<<"$line" >/dev/null \
  || fail "the withheld reply's line in the report: $line"
grep -c "reply-refused" <<<"$report" >/dev/null && fail "a stopped answer told twice: $report"
pass "the citizen's report tells the withheld reply once, with its three records"

# The clear national id is nowhere in the broker's store.
! grep -rqa "$SUBJECT" "$WORK/broker" || fail "national id found in the broker's store"
! grep -qa "$SUBJECT" "$WORK"/*.log || fail "national id found in a log"
pass "the broker keeps subject references only"
stop_broker
