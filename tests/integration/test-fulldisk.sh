#!/usr/bin/env bash
# A full disk under sustained traffic. The broker's data directory is a
# small tmpfs (or, where mounting is not allowed, its LMDB map is capped
# with --map-max 2): the broker must refuse with `unavailable` and say why
# in its log, never forward a message whose audit record is not committed,
# keep a log that verifies, and resume by itself (it probes every 5 s and
# audits store-resumed) once space is given back. SB_NO_TMPFS=1 forces the
# --map-max variant.
source "$(dirname "$0")/lib.sh"
# A private mount namespace: the tmpfs cannot outlive the test.
if [ -z "${SB_UNSHARED:-}" ] && [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
  trap - EXIT
  rm -rf "$WORK"
  SB_UNSHARED=1 exec unshare -m --propagation private bash "$0" "$@"
fi
setup_certs nhis koroad mois nts
setup_policy

TMPFS=
mkdir -p "$WORK/broker"
if [ -n "${SB_UNSHARED:-}" ] && [ -z "${SB_NO_TMPFS:-}" ] && mount -t tmpfs -o size=4m,mode=0700 tmpfs "$WORK/broker" 2>/dev/null; then
  TMPFS=1
  # Unmounted after the processes are gone, before lib.sh removes $WORK.
  trap 'st=$?; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 1;
        umount -l "$WORK/broker" 2>/dev/null || true; (exit $st); cleanup' EXIT
  start_broker --wal-size 1   # the journal takes its ring at start
  # Leave about 1 MiB free; the filler is the space given back later.
  avail=$(df --output=avail -B1 "$WORK/broker" | tail -1)
  fallocate -l $((avail - (1 << 20))) "$WORK/broker/filler" \
    || dd if=/dev/zero of="$WORK/broker/filler" bs=64k count=$(((avail - (1 << 20)) / 65536)) 2>/dev/null
  pass "broker data on a 4 MiB tmpfs, $(df --output=avail -B1 "$WORK/broker" | tail -1) bytes free"
else
  start_broker --map-max 2 --wal-size 1
  pass "mounting a tmpfs is not allowed here: the broker's map is capped at 2 MiB instead"
fi
for a in nhis koroad mois nts; do start_agent "$a"; done
start_nhis_backend
grant koroad koroad $CHECKUP $RENEWAL 2030-12-31 >/dev/null

"$BUILD/tests/load" --agent "$(agent_ep koroad)" --provider nhis --dataset $CHECKUP \
  --purpose $RENEWAL --subject $SUBJECT --fields exam_date --inflight 16 --timeout 1500 \
  >"$WORK/load.out" 2>"$WORK/load.log" &
LOAD=$!
PIDS+=("$LOAD")
wait_for 120 grep -q "audit log cannot be written" "$WORK/broker.log"
grep "audit commit failed" "$WORK/broker.log" | head -1 | grep -Eq "bytes free|MDB_MAP_FULL" \
  || fail "the broker's log does not say why: $(grep -m3 'audit' "$WORK/broker.log")"
pass "store full: $(grep -m1 'audit commit failed' "$WORK/broker.log" | sed 's/.*: audit/audit/')"

# Refused while full, with the reason; the broker stays up.
expect_error unavailable request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT --fields exam_date
kill -0 "$BROKER_PID" || fail "broker died when the store filled"
pass "requests are refused as unavailable while the store is full"
audit verify --data "$WORK/broker" --certs "$CERTS" >/dev/null || fail "log does not verify while full"
pass "the audit log verifies while full"

# The refusals' audit records fill the journal's ring (1 MiB) while LMDB
# cannot take them: batches then fail at once, and nothing may hang on them.
wait_for 60 grep -q "the journal has no room" "$WORK/broker.log"
pass "the journal filled too: $(grep -c 'the journal has no room' "$WORK/broker.log") batch(es) refused"

# Give the space back (the load stopped first, or it would fill it again at
# once): the broker resumes by itself.
kill "$LOAD"; wait "$LOAD" || true
grep -q '^unavailable [1-9]' "$WORK/load.out" || fail "no request saw unavailable: $(cat "$WORK/load.out")"
pass "load: $(tr '\n' ' ' <"$WORK/load.out")"
skip=$(lines "$WORK/broker.log")
if [ -n "$TMPFS" ]; then
  rm -f "$WORK/broker/filler"
  wait_for 60 logged_after "$WORK/broker.log" "$skip" "the store is writable again"
else
  stop_broker
  restart_broker --map-max 64
fi
wait_for 30 request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT --fields exam_date
pass "space given back: requests succeed again"
if [ -n "$TMPFS" ]; then
  resumed=$(audit query --data "$WORK/broker" --kind store-resumed --json | grep -c '"kind":"store-resumed"' || true)
  [ "$resumed" = 1 ] || fail "$resumed store-resumed records, for one resumption"
  pass "the broker audited store-resumed, once"
fi

stop_broker
for a in nhis koroad; do kill "${AGENT_PID[$a]}"; wait "${AGENT_PID[$a]}" || true; done
audit verify --data "$WORK/broker" --certs "$CERTS" >/dev/null || fail "final verify"
pass "the audit log verifies after the restart of traffic"

check_on_record
