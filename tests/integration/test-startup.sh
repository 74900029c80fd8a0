#!/usr/bin/env bash
# Start-up errors exit non-zero with a clear message; SIGTERM stops cleanly.
source "$(dirname "$0")/lib.sh"
setup_certs nhis koroad
setup_policy
BROKER_BIN="$BUILD/broker/sharebus-broker"
AGENT_BIN="$BUILD/agent/sharebus-agent"

must_fail() {  # must_fail STATUS PATTERN CMD...
  local want=$1 pattern=$2; shift 2
  local out status=0
  out=$("$@" 2>&1) || status=$?
  [ "$status" = "$want" ] || fail "expected exit $want, got $status from $*: $out"
  grep -q -- "$pattern" <<<"$out" || fail "expected '$pattern' from $*: $out"
}

must_fail 1 "root.cert" "$BROKER_BIN" --certs "$WORK/nowhere" --policy "$WORK/policy" \
  --data "$WORK/b1" --bind tcp://127.0.0.1:1
pass "unreadable certificate directory"

mkdir "$WORK/badpolicy"
printf 'version: 1\nrules:\n  - id: x\n    consumer: koroad\n    dataset: nothing\n' >"$WORK/badpolicy/a.yaml"
must_fail 1 "a.yaml:[0-9]*:[0-9]*:" "$BROKER_BIN" --certs "$CERTS" --policy "$WORK/badpolicy" \
  --data "$WORK/b2" --bind tcp://127.0.0.1:1
pass "broken policy: file:line:column and no start"

start_broker
must_fail 1 "cannot bind" "$BROKER_BIN" --certs "$CERTS" --policy "$WORK/policy" \
  --data "$WORK/b3" --bind "$BROKER"
pass "port in use"

must_fail 2 "usage" "$BROKER_BIN" --certs "$CERTS"
must_fail 2 "usage" "$BROKER_BIN" --certs "$CERTS" --policy "$WORK/policy" --data "$WORK/b4" \
  --bind tcp://127.0.0.1:1 --no-such-option
must_fail 2 "status does not take --bind" "$BROKER_BIN" status --data "$WORK/broker" \
  --bind tcp://127.0.0.1:1
must_fail 2 "reload does not take --json" "$BROKER_BIN" reload --data "$WORK/broker" --json
must_fail 2 "run does not take --to" "$BROKER_BIN" --certs "$CERTS" --policy "$WORK/policy" \
  --data "$WORK/b4" --bind tcp://127.0.0.1:1 --to "$WORK/copy"
[ ! -e "$WORK/b4" ] || fail "run with a flag it does not take made its data directory"
pass "bad arguments: usage, exit 2; a flag the command does not take is refused"

must_fail 1 "no valid, unrevoked certificate" "$AGENT_BIN" --agency mois --certs "$CERTS" \
  --broker "$BROKER" --listen "ipc://$WORK/mois.sock" --data "$WORK/a1"
must_fail 1 "loopback" "$AGENT_BIN" --agency nhis --certs "$CERTS" --broker "$BROKER" \
  --listen tcp://0.0.0.0:7777 --data "$WORK/a2"
must_fail 2 "invalid agency id" "$AGENT_BIN" --agency NHIS --certs "$CERTS" --broker "$BROKER" \
  --listen "ipc://$WORK/x.sock" --data "$WORK/a3"
pass "agent: missing certificate, non-loopback listener, bad id"

# The sharebus client refuses bad arguments and files before it talks to
# an agent, each in one line naming what is wrong (sharebus(1)).
client_error() {  # client_error STATUS PATTERN CMD...: that status, one line
  local want=$1 pattern=$2; shift 2
  must_fail "$want" "$pattern" "$@"
  local n
  n=$("$@" 2>&1 | wc -l || true)
  [ "$n" = 1 ] || fail "$n lines from $*: $("$@" 2>&1)"
}
NOWHERE="ipc://$WORK/nowhere.sock"
client_error 2 "^error: invalid: --until 2027-02-31: no such date" sb consent grant \
  --agent "$NOWHERE" --subject "$SUBJECT" --consumer koroad --dataset "$CHECKUP" \
  --purpose "$RENEWAL" --until 2027-02-31
client_error 2 "^error: invalid: --until 2027-01-01T23:59:60Z: no such date" sb consent grant \
  --agent "$NOWHERE" --subject "$SUBJECT" --consumer koroad --dataset "$CHECKUP" \
  --purpose "$RENEWAL" --until 2027-01-01T23:59:60Z
client_error 1 "^error: invalid: cannot use agent endpoint" sb subscribe --agent foo://x --topic t
client_error 1 "^error: invalid: cannot use agent endpoint" sb serve --agent foo://x --dataset d \
  --records "$SRC/tests/data/nhis-checkups.json"
client_error 1 "^error: invalid: $WORK/none.json: No such file or directory" sb serve \
  --agent "$NOWHERE" --dataset d --records "$WORK/none.json"
client_error 1 "^error: invalid: $WORK/none.json: No such file or directory" sb publish \
  --agent "$NOWHERE" --topic t --subject "$SUBJECT" --record "$WORK/none.json"
head -c 1100000 /dev/zero | tr '\0' x | sed 's/^/{"a":"/; s/$/"}/' >"$WORK/big.json"
client_error 1 "^error: too-big: $WORK/big.json: a record is at most 1 MiB" sb publish \
  --agent "$NOWHERE" --topic t --subject "$SUBJECT" --record "$WORK/big.json"
pass "sharebus: a date that does not exist, a bad endpoint, a missing or too big file"

# A key file open to group or others, or not a key file: refused in one
# error line naming the file and what to do (not a second one after it).
one_error() {  # one_error PATTERN CMD...: exit 1, one error line, matching
  local pattern=$1; shift
  must_fail 1 "$pattern" "$@"
  local n
  n=$("$@" 2>&1 | grep -c " error " || true)
  [ "$n" = 1 ] || fail "$n error lines from $*: $("$@" 2>&1)"
}
cp -a "$CERTS" "$WORK/loose"
chmod 644 "$WORK/loose/broker.key" "$WORK/loose/nhis.key"
one_error "broker.key: mode 0644 opens a secret key to group or others: run chmod 600 " \
  "$BROKER_BIN" --certs "$WORK/loose" --policy "$WORK/policy" --data "$WORK/b5" \
  --bind tcp://127.0.0.1:1
one_error "nhis.key: mode 0644 opens a secret key to group or others: run chmod 600 " \
  "$AGENT_BIN" --agency nhis --certs "$WORK/loose" --broker "$BROKER" \
  --listen "ipc://$WORK/loose.sock" --data "$WORK/a4"
chmod 600 "$WORK/loose/nhis.key"
chmod 640 "$WORK/loose/subject.key"
one_error "subject.key: mode 0640 opens a secret key" \
  "$AGENT_BIN" --agency nhis --certs "$WORK/loose" --broker "$BROKER" \
  --listen "ipc://$WORK/loose.sock" --data "$WORK/a4"
cp "$WORK/loose/koroad.key" "$WORK/loose/nhis.key"
one_error "nhis.key: its keys are not those of nhis's certificate" \
  "$AGENT_BIN" --agency nhis --certs "$WORK/loose" --broker "$BROKER" \
  --listen "ipc://$WORK/loose.sock" --data "$WORK/a4"
pass "key files open to others or of another agency: one error line naming the file"

start_agent nhis
ls -l "$WORK/nhis.sock" | grep -q '^srw-rw----' || fail "ipc socket not 0660: $(ls -l "$WORK/nhis.sock")"
stat -c %a "$WORK/broker/admin.sock" | grep -qx 600 || fail "admin socket not 0600"
pass "back-end socket 0660, admin socket 0600"

kill "${AGENT_PID[nhis]}"
wait "${AGENT_PID[nhis]}" || fail "agent exited with $? on SIGTERM"
stop_broker
pass "SIGTERM stops broker and agent cleanly"
