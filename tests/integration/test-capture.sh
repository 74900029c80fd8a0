#!/usr/bin/env bash
# What crosses the broker: every envelope it received, captured as the
# broker holds it (after CURVE). The citizen's data is not readable there,
# and the broker's own keys cannot open what agencies sealed for each other.
source "$(dirname "$0")/lib.sh"
mkdir -p "$WORK/capture"
start_bus --capture "$WORK/capture"
grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null
out=$(request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT)
grep -q '"hearing_right":"normal"' <<<"$out" || fail "exchange: $out"
stop_broker

# The broker remembers the message ids of the skew window across a
# restart (from its audit log): koroad's captured request, sent again on
# koroad's connection, is a replay. (The broker captures no more.)
restart_broker
out=$("$BUILD/tests/rogue" --certs "$CERTS" --agency koroad --broker "$BROKER" resend \
  "$WORK"/capture/*.env)
grep -qx "KIND_REQUEST answer: replay" <<<"$out" || fail "request resent after a restart: $out"
pass "a captured request resent after a restart: replay"
stop_broker

n=$(ls "$WORK/capture" | wc -l)
[ "$n" -ge 4 ] || fail "only $n envelopes captured"
for secret in "$SUBJECT" 9001011234567 2025-10-02 '"normal"' normal hearing_right; do
  if grep -rqa -- "$secret" "$WORK/capture"; then
    [ "$secret" = hearing_right ] && continue   # a field name: metadata, in the header
    fail "'$secret' readable in what crossed the broker"
  fi
done
pass "$n envelopes crossed the broker: no national id, no value in clear"
grep -rqa hearing_right "$WORK/capture" || fail "field names should be in the signed header"
pass "field names, dataset and purpose are visible metadata"

# The broker's own keys open what is addressed to it (consent grants), and
# nothing sealed between agencies.
inspect=$("$BUILD/tests/rogue" --certs "$CERTS" --agency broker --broker none inspect "$WORK/capture")
grep -q '^opened 0$' <<<"$inspect" || fail "the broker opened an agency's payload: $inspect"
sealed=$(sed -n 's/^sealed //p' <<<"$inspect")
[ "$sealed" -ge 2 ] || fail "expected the request and the reply sealed: $inspect"
grep -q '^own [1-9]' <<<"$inspect" || fail "the consent grant is sealed for the broker: $inspect"
pass "the broker's keys opened 0 of $sealed agency payloads"
