#!/usr/bin/env bash
# A backup taken while requests flow verifies on its own, is never
# overwritten, and a broker restored from it starts, keeps its consents and
# answers requests, with a log that still verifies.
source "$(dirname "$0")/lib.sh"
setup_certs nhis koroad mois nts
setup_policy
sed -i '/^ *rate:/d' "$WORK/policy/health.yaml"
start_broker
for a in nhis koroad; do start_agent "$a"; done
start_nhis_backend
grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null
broker() { "$BUILD/broker/sharebus-broker" "$@"; }

"$BUILD/tests/load" --agent "$(agent_ep koroad)" --provider nhis --dataset $CHECKUP \
  --purpose $RENEWAL --subject $SUBJECT --fields exam_date --inflight 8 \
  >"$WORK/load.out" 2>"$WORK/load.log" &
LOAD=$!
PIDS+=("$LOAD")
answered() { [ "$(audit query --data "$WORK/broker" --kind reply-forwarded --json | wc -l)" -ge "$1" ]; }
wait_for 30 answered 200

for i in 1 2 3; do
  out=$(broker backup --data "$WORK/broker" --to "$WORK/backup$i") || fail "backup $i: $out"
  grep -q "^backup of $WORK/broker/store in $WORK/backup$i/store: [0-9]* bytes, audit records 1\.\.[0-9]*" \
    <<<"$out" || fail "backup $i said: $out"
  [ "$(stat -c %a "$WORK/backup$i/store/data.mdb")" = 600 ] || fail "backup $i is not mode 0600"
  sleep 0.3
done
pass "three backups under traffic: $out"

for i in 1 2 3; do
  audit verify --data "$WORK/backup$i" --certs "$CERTS" >"$WORK/verify$i.out" 2>&1 \
    || fail "backup $i does not verify: $(cat "$WORK/verify$i.out")"
done
n1=$(audit query --data "$WORK/backup1" --json | wc -l)
n3=$(audit query --data "$WORK/backup3" --json | wc -l)
[ "$n1" -gt 0 ] && [ "$n3" -gt "$n1" ] || fail "backups hold $n1 then $n3 records"
pass "each backup verifies on its own ($n1 .. $n3 records)"

out=$(broker backup --data "$WORK/broker" --to "$WORK/backup1" 2>&1) && fail "overwrote a backup"
grep -q "backup1/store: exists: a backup is never overwritten" <<<"$out" || fail "overwrite: $out"
out=$(broker backup --data "$WORK/nothing" --to "$WORK/backup9" 2>&1) && fail "backup of nothing"
[ ! -e "$WORK/backup9/store" ] || fail "a failed backup left a store behind"
pass "a backup is never overwritten; a missing store is an error"

kill "$LOAD"; wait "$LOAD" || true
grep -q '^ok [1-9]' "$WORK/load.out" || fail "no traffic: $(cat "$WORK/load.out")"
grep -Eq '^(timeout|unavailable|bad-signature|internal) ' "$WORK/load.out" \
  && fail "requests failed during the backups: $(cat "$WORK/load.out")"
pass "traffic during the backups: $(tr '\n' ' ' <"$WORK/load.out")"

# Restore: stop the broker, put the backup in place of its store, start.
stop_broker
mv "$WORK/broker/store" "$WORK/store.before-restore"
cp -a "$WORK/backup3/store" "$WORK/broker/store"
restart_broker
wait_for 20 request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT
pass "the restored broker answers requests under the consent in the backup"
stop_broker
audit verify --data "$WORK/broker" --certs "$CERTS" >/dev/null || fail "restored log does not verify"
n=$(audit query --data "$WORK/broker" --json | wc -l)
[ "$n" -gt "$n3" ] || fail "restored log: $n records, the backup had $n3"
pass "the restored log verifies and grows from the backup ($n3 -> $n records)"
