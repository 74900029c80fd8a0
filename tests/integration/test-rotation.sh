#!/usr/bin/env bash
# Key rotation under traffic loses no request. While koroad asks nhis for
# checkups without pause, first koroad (the consumer) and then nhis (the
# provider) get a new certificate (sharebus-cert issue --replace), the
# broker is reloaded to admit it, and the agency's agent moves to it on
# SIGHUP; then the old certificates are revoked and the broker reloaded
# again. Every request sent is answered with its record, the other
# agency's agent picks up the new certificate by itself, and an agent
# still holding only a revoked key is refused.
source "$(dirname "$0")/lib.sh"
declare -A skip_after
setup_certs nhis koroad mois nts
setup_policy
sed -i '/^ *rate:/d' "$WORK/policy/health.yaml"
start_broker
for a in nhis koroad; do start_agent "$a"; done
start_nhis_backend
grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null
broker() { "$BUILD/broker/sharebus-broker" "$@"; }
serial_of() { sed -n 's/^ *serial = "\([0-9]*\)"$/\1/p' "$CERTS/$1.cert"; }
status_serial() {  # the serial the broker sees AGENCY's connection use
  broker status --data "$WORK/broker" --json \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['connections'].get('$1', {}).get('serial', 0))"
}
answered() { [ "$(audit query --data "$WORK/broker" --kind reply-forwarded --json | wc -l)" -ge "$1" ]; }
serial_is() { [ "$(status_serial "$1")" = "$2" ]; }

"$BUILD/tests/load" --agent "$(agent_ep koroad)" --provider nhis --dataset $CHECKUP \
  --purpose $RENEWAL --subject $SUBJECT --fields exam_date --inflight 16 --timeout 5000 \
  >"$WORK/load.out" 2>"$WORK/load.log" &
LOAD=$!
PIDS+=("$LOAD")
wait_for 30 answered 100

rotate() {  # rotate AGENCY: new certificate, broker admits it, agent moves to it
  local a=$1 old new skip
  old=$(serial_of "$a")
  cert issue --dir "$CERTS" --agency "$a" --name "$a" --replace >/dev/null
  new=$(serial_of "$a")
  [ "$new" != "$old" ] && [ -f "$CERTS/$a.$old.cert" ] && [ -f "$CERTS/$a.$old.key" ] \
    || fail "issue --replace for $a: serial $old -> $new"
  broker reload --data "$WORK/broker" >/dev/null || fail "reload admitting $a serial $new"
  skip=$(lines "$WORK/$a.log")
  kill -HUP "${AGENT_PID[$a]}"
  wait_for 20 logged_after "$WORK/$a.log" "$skip" "switched from certificate serial $old to serial $new"
  wait_for 20 serial_is "$a" "$new"
  eval "OLD_$a=$old NEW_$a=$new"
  pass "$a moved from serial $old to $new under traffic"
}

rotate koroad
n=$(audit query --data "$WORK/broker" --kind reply-forwarded --json | wc -l)
wait_for 30 answered $((n + 200))
rotate nhis
n=$(audit query --data "$WORK/broker" --kind reply-forwarded --json | wc -l)
wait_for 30 answered $((n + 200))
grep -q "certificates reloaded (.*): " "$WORK/koroad.log" \
  || fail "koroad's agent did not pick up nhis's new certificate"

# The old certificates go; the agents see the revocation list change.
cert revoke --dir "$CERTS" --agency koroad --serial "$OLD_koroad" >/dev/null
cert revoke --dir "$CERTS" --agency nhis --serial "$OLD_nhis" >/dev/null
broker reload --data "$WORK/broker" >/dev/null || fail "reload after revoking"
n=$(audit query --data "$WORK/broker" --kind reply-forwarded --json | wc -l)
wait_for 30 answered $((n + 200))
pass "old certificates revoked; traffic goes on"

kill "$LOAD"
wait "$LOAD" || fail "load exited with $?"
sent=$(sed -n 's/^sent //p' "$WORK/load.log")
[ -n "$sent" ] && [ "$(cat "$WORK/load.out")" = "$(printf 'answers %d\nok %d' "$sent" "$sent")" ] \
  || fail "requests lost or refused across the rotations: $(tr '\n' ' ' <"$WORK/load.out")"
pass "no request lost: sent $sent, $(tr '\n' ' ' <"$WORK/load.out")"

# The broker's log records which certificate each connection used.
audit query --data "$WORK/broker" --kind agent-connected --agency koroad --json \
  | grep -q "\"detail\":\"certificate serial $NEW_koroad\"" || fail "no connection with koroad's new key on record"

# An agent that still has only koroad's revoked key is refused by the broker.
mkdir "$WORK/stale"
cp "$CERTS/root.cert" "$CERTS/broker.cert" "$CERTS/subject.key" "$CERTS/nhis.cert" "$WORK/stale/"
cp "$CERTS/koroad.$OLD_koroad.cert" "$WORK/stale/koroad.cert"
cp "$CERTS/koroad.$OLD_koroad.key" "$WORK/stale/koroad.key"
"$BUILD/agent/sharebus-agent" --agency koroad --certs "$WORK/stale" --broker "$BROKER" \
  --listen "ipc://$WORK/stale.sock" --data "$WORK/agent-stale" >"$WORK/stale.log" 2>&1 &
STALE=$!
PIDS+=("$STALE")
wait_for 20 grep -q "connection from .* refused: CURVE key not admitted" "$WORK/broker.log"
grep -q "connected to the broker" "$WORK/stale.log" && fail "an agent with a revoked key got in"
kill "$STALE"; wait "$STALE" || true
pass "an agent with the revoked key is refused"

request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT >/dev/null \
  || fail "a request after the rotations"

# The broker's own key: agents told on SIGHUP connect to the new key while
# the old broker still serves them, and move over when it restarts.
OLD_broker=$(serial_of broker)
cert issue --dir "$CERTS" --broker --replace >/dev/null
NEW_broker=$(serial_of broker)
for a in koroad nhis; do
  skip=$(lines "$WORK/$a.log")
  kill -HUP "${AGENT_PID[$a]}"
  wait_for 20 logged_after "$WORK/$a.log" "$skip" "connecting to the broker's new key (broker certificate serial $NEW_broker)"
done
request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT >/dev/null \
  || fail "a request while the agents wait for the broker's new key"
for a in koroad nhis; do skip_after[$a]=$(lines "$WORK/$a.log"); done
stop_broker
restart_broker
for a in koroad nhis; do
  wait_for 30 logged_after "$WORK/$a.log" "${skip_after[$a]}" "switched to the broker's new key"
done
wait_for 30 request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT
# The old broker signed a last checkpoint when it stopped; the revocation
# list keeps times to the second, so revoke in a later second than that.
sleep 1.2
cert revoke --dir "$CERTS" --broker --serial "$OLD_broker" >/dev/null
broker reload --data "$WORK/broker" >/dev/null || fail "reload after revoking the old broker key"
request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT >/dev/null \
  || fail "a request after the broker's rotation"
pass "the broker moved from serial $OLD_broker to $NEW_broker; agents followed"
stop_broker
audit verify --data "$WORK/broker" --certs "$CERTS" >/dev/null || fail "audit verify"
for a in koroad nhis; do
  audit verify --data "$WORK/agent-$a" >/dev/null 2>&1 || true
done
pass "the log verifies"
