#!/usr/bin/env bash
# Secrets stay out of the logs. A full session like scripts/demo (consent,
# requests allowed and refused, revocation, an event to an online and an
# offline subscriber, a replayed and a forged message, the auditor's tools)
# with every daemon at --log-level debug; then every line of every log and
# of every tool's stderr is searched for every key of the certificate
# directory (secret and public, Z85 and hex, subject key included) and for
# the national ids used: none may appear. Every key file is mode 0600.
source "$(dirname "$0")/lib.sh"
OTHER=850315-2345678          # a second citizen
setup_certs nhis koroad mois nts
setup_policy
start_broker --log-level debug

start_debug_agent() {
  local a=$1 skip
  skip=$(lines "$WORK/$a.log")
  "$BUILD/agent/sharebus-agent" --agency "$a" --certs "$CERTS" --broker "$BROKER" \
    --listen "$(agent_ep "$a")" --data "$WORK/agent-$a" --log-level debug >>"$WORK/$a.log" 2>&1 &
  AGENT_PID[$a]=$!
  PIDS+=("$!")
  wait_for 20 logged_after "$WORK/$a.log" "$skip" "policy .* received from the broker"
}
for a in nhis koroad mois nts; do start_debug_agent "$a"; done
start_nhis_backend

# Tools: stdout is what a back-end or an auditor asked for; stderr is a log.
tool() { "$@" 2>>"$WORK/tools-stderr.log" >>"$WORK/tools.out"; }
refused() { if "$@" 2>>"$WORK/tools-stderr.log" >>"$WORK/tools.out"; then fail "allowed: $*"; fi; }
req() {  # req AGENCY SUBJECT [PURPOSE]
  sb request --agent "$(agent_ep "$1")" --provider nhis --dataset $CHECKUP \
    --purpose "${3:-$RENEWAL}" --subject "$2"
}

refused req koroad "$SUBJECT"                                   # no consent yet
tool sb consent grant --agent "$(agent_ep koroad)" --subject "$SUBJECT" --consumer koroad \
  --dataset $CHECKUP --purpose $RENEWAL --until 2030-12-31 --evidence "form 12 at the counter"
tool req koroad "$SUBJECT"
grep -q hearing_right "$WORK/tools.out" || fail "the exchange did not happen"
refused req koroad "$SUBJECT" marketing                         # purpose not allowed
refused req koroad "$OTHER"                                     # other citizen, no consent
refused req koroad "not-a-known-id"                             # no such record
tool sb consent list --agent "$(agent_ep koroad)" --subject "$SUBJECT" --json
tool sb consent revoke --agent "$(agent_ep koroad)" --subject "$SUBJECT" --reason "withdrawn"
refused req koroad "$SUBJECT"

# An event, to nts online and koroad offline that catches up.
"$BUILD/agent/sharebus" subscribe --agent "$(agent_ep nts)" --topic resident.address-changed \
  --count 1 >>"$WORK/tools.out" 2>>"$WORK/tools-stderr.log" &
SUB=$!
PIDS+=("$SUB")
kill "${AGENT_PID[koroad]}"; wait "${AGENT_PID[koroad]}" || true
sleep 0.5
echo '{"new_address": "261 Sejong-daero", "moved_on": "2026-11-20", "previous_address": "12 Jong-ro"}' \
  >"$WORK/move.json"
tool sb publish --agent "$(agent_ep mois)" --topic resident.address-changed --subject "$OTHER" \
  --record "$WORK/move.json"
wait "$SUB" || fail "nts did not get the event"
start_debug_agent koroad
tool sb subscribe --agent "$(agent_ep koroad)" --topic resident.address-changed --count 1

# Hostile traffic, so refusals are logged too.
rogue mois replay >>"$WORK/tools.out" 2>>"$WORK/tools-stderr.log"
rogue mois forge >>"$WORK/tools.out" 2>>"$WORK/tools-stderr.log"

# The auditor.
sleep 1.2     # a checkpoint reaches the agents
tool audit verify --data "$WORK/broker" --certs "$CERTS"
tool audit report --data "$WORK/broker" --subject "$SUBJECT" --subject-key "$CERTS/subject.key" \
  --certs "$CERTS"
tool audit query --data "$WORK/broker" --json
grep -q "koroad" "$WORK/tools.out" || fail "the auditor's report is empty"
stop_broker
for a in nhis koroad mois nts; do kill "${AGENT_PID[$a]}"; wait "${AGENT_PID[$a]}" || true; done

# What to look for: every key, as Z85 and as hex, and the national ids as
# given and normalised.
"$BUILD/tests/rogue" --certs "$CERTS" --agency broker --broker none keystrings >"$WORK/needles"
n=$(wc -l <"$WORK/needles")
[ "$n" -ge 40 ] || fail "only $n key strings found in $CERTS"
for id in "$SUBJECT" "$OTHER"; do
  printf '%s\n%s\n' "$id" "${id//-/}" >>"$WORK/needles"
done
logs=("$WORK"/*.log)
total=$(cat "${logs[@]}" | wc -l)
[ "$total" -ge 30 ] || fail "only $total log lines: the session did not run"
# The search itself must work: a planted line is found.
grep -Fqf "$WORK/needles" <<<"x $(sed -n 3p "$WORK/needles") y" || fail "the search finds nothing"
if grep -Ff "$WORK/needles" "${logs[@]}" >"$WORK/leaks"; then
  fail "secrets in the logs: $(head -5 "$WORK/leaks")"
fi
pass "$total lines in ${#logs[@]} logs: none holds any of $n key strings or the national ids"

# Key files are for their owner only.
for f in "$CERTS"/*.key; do
  [ "$(stat -c %a "$f")" = 600 ] || fail "$f is mode $(stat -c %a "$f")"
done
pass "every key file is mode 0600: $(cd "$CERTS" && echo *.key)"

# The broker's journal holds what its store holds, subject references and
# sealed payloads: no national id, no key, and for the broker's user only.
[ -s "$WORK/broker/wal" ] || fail "no journal at $WORK/broker/wal"
[ "$(stat -c %a "$WORK/broker/wal")" = 600 ] || fail "the journal is mode $(stat -c %a "$WORK/broker/wal")"
if grep -aFf "$WORK/needles" "$WORK/broker/wal" >/dev/null; then
  fail "the broker's journal holds a key or a national id"
fi
pass "the broker's journal is mode 0600 and holds no key string and no national id"
