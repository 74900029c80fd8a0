#!/usr/bin/env bash
# Hostile peers against a running broker: each gets its own refusal, and a
# well-behaved agent's traffic keeps flowing throughout.
source "$(dirname "$0")/lib.sh"
start_bus
grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null

good() {  # the well-behaved agent's request must keep succeeding
  request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
    --fields exam_date >/dev/null || fail "well-behaved traffic stopped after: $1"
}
answer() {  # answer EXPECTED MODE... : the rogue's (last) answer must be EXPECTED
  local expected=$1; shift
  local got
  got=$(rogue "$@" | tail -1)
  [ "$got" = "answer: $expected" ] || fail "rogue $*: expected $expected, got '$got'"
  good "$*"
  pass "rogue $*: $expected"
}

answer ok mois hello
answer bad-signature mois forge
answer wrong-sender mois impersonate nhis
answer stale mois stale
answer stale mois far-future
answer malformed mois garbage

# 200,000 empty frames in one message: refused, and read one at a time
# rather than held (a million grew the broker by 750 MB when it held them).
rss() { awk '/^VmRSS/ {print $2}' "/proc/$BROKER_PID/status"; }
rss_before=$(rss)
answer malformed mois frames 200000
grown=$(( $(rss) - rss_before ))
[ "$grown" -lt 80000 ] || fail "a message of 200,000 frames grew the broker by $grown kB"
pass "a message of 200,000 frames: malformed, the broker grew by $grown kB"
answer bad-signature mois forged-consent
# Many at once, checked on the broker's two threads: each forged one is
# refused as forged, every other one answered as the lone one was.
out=$(rogue mois burst 200)
grep -qx "forged-refused 40 of 40" <<<"$out" || fail "burst: $out"
grep -qx "others-answered 160 of 160 denied" <<<"$out" || fail "burst: $out"
good burst
pass "200 requests at once, 40 forged: 40 bad-signature, 160 denied"
out=$(rogue mois replay)
[ "$(sed -n 1p <<<"$out")" = "answer: denied" ] || fail "replay, first: $out"
[ "$(sed -n 2p <<<"$out")" = "answer: replay" ] || fail "replay, second: $out"
good replay
pass "replayed envelope: first denied (no rule for mois), second replay"

# A frame over ZMQ_MAXMSGSIZE: libzmq drops the connection, nothing reaches
# the broker's code, and the same agency can connect again.
answer none mois oversize
answer ok mois hello

# A key no certificate holds is refused by zauth at the handshake.
answer none mois stranger
grep -q "CURVE key not admitted" "$WORK/broker.log" || fail "refused connection not logged"

# Hundreds of strangers at once: each is refused and counted, but they are
# not each an audit record (which would let anyone fill the log): ten a
# second one by one, the rest in one record a second with their count.
before=$(audit query --data "$WORK/broker" --kind agent-refused --json | grep -c '"kind"' || true)
start=$SECONDS
rogue mois strangers 300 >/dev/null
summarised() {  # grep -c reads it all: grep -q would end the pipe early (pipefail)
  audit query --data "$WORK/broker" --kind agent-refused --json \
    | grep -c "more connections, the last" >/dev/null
}
wait_for 10 summarised || fail "no summary record of the strangers beyond ten a second"
sleep 1.5   # any summary of a last second
# At most ten records and one summary for each second the strangers took
# (whole seconds, and the one they began in and the one of the summary).
most=$((11 * (SECONDS - start + 2)))
records=$(audit query --data "$WORK/broker" --kind agent-refused --json | grep -c '"kind"' || true)
refused=$("$BUILD/broker/sharebus-broker" status --data "$WORK/broker" --json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"].get("refused.connection", 0))')
[ "$refused" -ge 250 ] || fail "300 strangers: only $refused connections refused"
[ $((records - before)) -le $most ] && [ $((records - before)) -lt 100 ] \
  || fail "300 strangers made $((records - before)) audit records (at most $most)"
pass "300 strangers: $refused refused, $((records - before)) audit records"

# Thousands of frames per second from one agency.
rogue mois flood 5000 >/dev/null
good flood
kill -0 "$BROKER_PID" || fail "broker died under the flood"
pass "5000 garbage frames: broker up, good traffic flows"

# Revoked agencies, at the next reload: a new connection is refused by zauth,
# and a live one has every message refused as revoked.
cert revoke --dir "$CERTS" --agency mois >/dev/null
"$BUILD/broker/sharebus-broker" reload --data "$WORK/broker" >/dev/null
answer none mois hello
pass "revoked agency refused at connect after reload"
cert revoke --dir "$CERTS" --agency koroad >/dev/null
"$BUILD/broker/sharebus-broker" reload --data "$WORK/broker" >/dev/null
expect_error revoked request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT
pass "live agent of a revoked agency cut off at the next reload"
kill -0 "$BROKER_PID" || fail "broker died"
stop_broker
