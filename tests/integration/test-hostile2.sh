#!/usr/bin/env bash
# More hostile peers: expired certificates, a broker impostor against the
# agents' pinned broker key, a header over SBI_HEADER_MAX in a frame well
# within ZMQ_MAXMSGSIZE, an envelope carrying another envelope's payload, and
# one whose signature holds but whose MAC does not, one whose sealed subject
# is not the one its header names.
# A well-behaved agent's traffic keeps flowing throughout.
source "$(dirname "$0")/lib.sh"
setup_certs nhis koroad mois nts lapsed brief
setup_policy
start_broker
for a in nhis koroad; do start_agent "$a"; done
start_nhis_backend
grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null

good() {
  request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
    --fields exam_date >/dev/null || fail "well-behaved traffic stopped after: $1"
}
answer() {  # answer EXPECTED MODE...: the rogue's (last) answer must be EXPECTED
  local expected=$1; shift
  local got
  got=$(rogue "$@" | tail -1)
  [ "$got" = "answer: $expected" ] || fail "rogue $*: expected $expected, got '$got'"
  good "$*"
  pass "rogue $*: $expected"
}
reload() { "$BUILD/broker/sharebus-broker" reload --data "$WORK/broker" >/dev/null; }

# --- expired certificates
answer ok lapsed hello        # valid: the same agency is admitted before
rogue lapsed backdate -60 >/dev/null
reload
answer none lapsed hello
grep -q "CURVE key not admitted" "$WORK/broker.log" || fail "refused connection not logged"
pass "a certificate that has expired is refused at connect after the reload"

# Connected while valid, expired by the time it speaks again: its messages
# are refused as expired; a new connection is refused at the handshake.
end=$(rogue brief backdate 3)
reload
answer expired brief hello-until "$end"
answer none brief hello
pass "a certificate that expires while connected: its messages are refused as expired, a new connection at the handshake"

# --- frames the broker must refuse
answer malformed mois bighead
answer bad-signature mois swap
kill -0 "$BROKER_PID" || fail "broker died"

# --- a MAC only the two agencies can check: a request koroad really signed
# (the broker passes it) whose MAC for nhis is wrong; nhis's agent refuses it.
answer none koroad badmac $SUBJECT
wait_for 10 grep -q "from koroad refused: signature, MAC or payload hash does not verify" \
  "$WORK/nhis.log"
pass "a request with a valid signature and a wrong MAC: passed by the broker, refused by nhis"

# --- a request whose header names a citizen who consented while the sealed
# id is another's: the broker checks consent and audits under the header's
# reference alone, so nhis's agent must check the sealed id against it. (Its
# answer goes to koroad's real agent, which holds koroad's route.)
answer none koroad subject-swap $SUBJECT 850315-2345678
wait_for 10 grep -q "from koroad refused: the sealed subject is not the one the header" \
  "$WORK/nhis.log"
wait_for 10 grep -q "malformed from nhis: the sealed subject is not the one" "$WORK/koroad.log"
pass "a request about one citizen under another's consent: refused by nhis's agent"

# --- a subscriber that acknowledges an event and reconnects at once, before
# the broker's store has applied the acknowledgement: the event does not come
# again (a second delivery record), and the queue counts the one left.
out=$(rogue nts ack-reconnect mois)
grep -qx "again 1" <<<"$out" && grep -qx "acknowledged-again no" <<<"$out" \
  || fail "an event acknowledged before a reconnection: $out"
depth=$("$BUILD/broker/sharebus-broker" status --data "$WORK/broker" --json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["event_queues"]["nts"])')
[ "$depth" = 1 ] || fail "nts's queue after one of two events was acknowledged: $depth"
pass "an event acknowledged just before its subscriber reconnects: not sent again, queue 1"

# --- a provider that answers beyond the rule
# The real nhis steps aside; a rogue nhis answers with blood_pressure, which
# no rule lets flow: the broker refuses the reply and the consumer is told.
kill "$NHIS_BACKEND" "${AGENT_PID[nhis]}"
wait "$NHIS_BACKEND" "${AGENT_PID[nhis]}" || true
"$BUILD/tests/rogue" --certs "$CERTS" --agency nhis --broker "$BROKER" overreply \
  >"$WORK/overreply.out" 2>&1 &
ROGUE=$!
PIDS+=("$ROGUE")
wait_for 10 grep -q '^waiting' "$WORK/overreply.out"
expect_error fields request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT --fields exam_date
wait "$ROGUE" || fail "rogue nhis: $(cat "$WORK/overreply.out")"
grep -q '^answer: fields$' "$WORK/overreply.out" || fail "rogue nhis: $(cat "$WORK/overreply.out")"
grep -q "beyond rule" "$WORK/broker.log" || fail "the refused reply is not logged"
pass "a reply carrying a field beyond the rule: refused to the provider, 'fields' to the consumer"
start_agent nhis
start_nhis_backend
good "the real nhis's return"

# --- the broker's key is pinned by the agents
# Control: an impostor holding the broker's real CURVE key receives the
# agents' traffic (so the next check can fail).
stop_broker
"$BUILD/tests/rogue" --certs "$CERTS" --agency broker --broker "$BROKER" impostor-real \
  >"$WORK/impostor-real.out" 2>&1 &
IMPOSTOR=$!
PIDS+=("$IMPOSTOR")
wait_for 20 grep -q '^message' "$WORK/impostor-real.out"
kill "$IMPOSTOR"; wait "$IMPOSTOR" || fail "impostor: $(cat "$WORK"/impostor*.out)"
pass "control: with the broker's real key, the impostor hears from the agents"

# The impostor with another key on the broker's port: the agents connect to
# the port, the CURVE handshake fails, and not one message reaches it.
"$BUILD/tests/rogue" --certs "$CERTS" --agency broker --broker "$BROKER" impostor \
  >"$WORK/impostor.out" 2>&1 &
IMPOSTOR=$!
PIDS+=("$IMPOSTOR")
wait_for 10 grep -q '^listening' "$WORK/impostor.out"
expect_error timeout request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT --timeout 1000
wait_for 20 grep -q '^event handshake-failed' "$WORK/impostor.out"
kill "$IMPOSTOR"; wait "$IMPOSTOR" || fail "impostor: $(cat "$WORK"/impostor*.out)"
grep -q '^received 0$' "$WORK/impostor.out" || fail "the impostor received: $(cat "$WORK/impostor.out")"
n=$(grep -c '^event accepted' "$WORK/impostor.out" || true)
[ "$n" -ge 1 ] || fail "no agent reached the impostor's port: $(cat "$WORK/impostor.out")"
pass "a broker impostor with another key: $n connection(s) accepted, handshakes failed, 0 messages"

# The real broker comes back on its port: the agents reconnect and traffic flows.
restart_broker
wait_for 30 request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT --fields exam_date
pass "the real broker is back: traffic flows"

# nhis's certificate expires while its agent stays connected: a request to
# it is refused at once, naming the certificate (it was forwarded, and
# timed out). Its successor is issued and admitted while it is still valid,
# so no reload forgets the expired connection before the agent moves.
rogue nhis backdate 5 >/dev/null
reload
cert issue --dir "$CERTS" --agency nhis --name nhis --replace >/dev/null
reload
sleep 6
out=$(request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
  --fields exam_date --timeout 3000 2>&1) && fail "a request to an expired provider succeeded"
grep -q "^error: unavailable: the certificate nhis connected with has expired" <<<"$out" \
  || fail "a request to a provider whose certificate expired: $out"
pass "a provider whose certificate expired while connected: unavailable at once"

# nhis's agent then moves to the new certificate on SIGHUP: the HELLO made
# with it takes over nhis's route (the expired connection must not stand
# in its way), and requests reach nhis again at once (not after the 20 s
# in which the broker forgets a silent connection).
skip=$(lines "$WORK/nhis.log")
kill -HUP "${AGENT_PID[nhis]}"
wait_for 20 logged_after "$WORK/nhis.log" "$skip" "switched from certificate serial"
wait_for 5 request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT --fields exam_date --timeout 3000
pass "a provider that moved to a new certificate after its old one expired: served again"

# nhis is revoked while koroad's request waits on its (slow) back-end: the
# reload that cuts nhis off answers koroad unavailable at once, rather
# than leaving it to its 20 s deadline.
restart_nhis_backend --delay 30000
routed() { audit query --data "$WORK/broker" --kind request-routed --json | wc -l; }
routed_beyond() { [ "$(routed)" -gt "$1" ]; }
n=$(routed)
request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
  --fields exam_date --timeout 20000 >"$WORK/waiting.out" 2>&1 &
ASK=$!
wait_for 10 routed_beyond "$n"
serial=$(sed -n 's/^ *serial = "\([0-9]*\)"$/\1/p' "$CERTS/nhis.cert")
cert revoke --dir "$CERTS" --agency nhis --serial "$serial" >/dev/null
start=$SECONDS
reload
wait "$ASK" && fail "a request to a revoked provider succeeded: $(cat "$WORK/waiting.out")"
[ $((SECONDS - start)) -lt 10 ] || fail "the consumer waited $((SECONDS - start)) s for a revoked provider"
grep -q "^error: unavailable: nhis is not reachable" "$WORK/waiting.out" \
  || fail "a request waiting on a revoked provider: $(cat "$WORK/waiting.out")"
pass "a provider revoked while a request waited on it: the consumer is answered unavailable at the reload"
stop_broker
