#!/usr/bin/env bash
# Policy reload under live request traffic, through the real broker and
# agents: a removed field or rule takes effect on the next request, at the
# broker and at the provider's agent; a broken policy is refused (every
# error named, audited) and the old one keeps serving; SIGHUP reloads too;
# the swap itself fails no request. And rate limits per rule and consumer.
source "$(dirname "$0")/lib.sh"

REVIEW=driver-licence-aptitude-review
SURVEY=aptitude-survey

policy() { "$BUILD/policy/sharebus-policy" "$@"; }
reload() { "$BUILD/broker/sharebus-broker" reload --data "$WORK/broker"; }
version() { policy check "$WORK/policy" | sed -n 's/.*, version \([0-9a-f]\{64\}\)$/\1/p'; }
serving_version() {
  "$BUILD/broker/sharebus-broker" status --data "$WORK/broker" --json \
    | sed -n 's/.*"policy_version":"\([0-9a-f]*\)".*/\1/p'
}

# The test's own policy: the checkup dataset, and the rules the reloads
# change. renewal has no rate limit, so that the load never meets one.
write_policy() {  # write_policy RENEWAL_FIELDS|none [SURVEY_RATE|none]
  mkdir -p "$WORK/policy"
  cat >"$WORK/policy/datasets.yaml" <<EOF
version: 1
datasets:
  $CHECKUP:
    provider: nhis
    subject: resident
    fields: [exam_date, vision_left, vision_right, hearing_left, hearing_right, blood_pressure]
EOF
  {
    echo "version: 1"
    echo "rules:"
    if [ "$1" != none ]; then
      cat <<EOF
  - id: renewal
    consumer: koroad
    dataset: $CHECKUP
    purposes: [$RENEWAL]
    fields: [$1]
    consent: none
EOF
    fi
    cat <<EOF
  - id: review-koroad
    consumer: koroad
    dataset: $CHECKUP
    purposes: [$REVIEW]
    fields: [exam_date, vision_left]
    consent: none
    rate: 5/s
  - id: review-nts
    consumer: nts
    dataset: $CHECKUP
    purposes: [$REVIEW]
    fields: [exam_date, vision_left]
    consent: none
    rate: 5/s
  - id: aptitude/survey
    consumer: koroad
    dataset: $CHECKUP
    purposes: [$SURVEY]
    fields: [exam_date]
    consent: none
EOF
    [ "${2:-3/min}" = none ] || echo "    rate: ${2:-3/min}"
  } >"$WORK/policy/rules.yaml"
}

# load AGENCY PURPOSE OUT [options...]: requests from AGENCY's agent.
load() {
  "$BUILD/tests/load" --agent "$(agent_ep "$1")" --provider nhis --dataset $CHECKUP \
    --purpose "$2" --subject $SUBJECT "${@:4}" >"$WORK/$3.out" 2>"$WORK/$3.log"
}
# load_start OUT: koroad's renewal requests, 32 in flight, until stopped.
load_start() {
  "$BUILD/tests/load" --agent "$(agent_ep koroad)" --provider nhis --dataset $CHECKUP \
    --purpose $RENEWAL --subject $SUBJECT --inflight 32 --timeout 3000 \
    >"$WORK/$1.out" 2>"$WORK/$1.log" &
  LOAD=$!
}
outcome() { awk -v k="$2" '$1 == k { n = $2 } END { print n + 0 }' "$WORK/$1.out"; }
# Fails unless every outcome in OUT is one of KINDS.
only_outcomes() {  # only_outcomes OUT KIND...
  local out=$1; shift
  local other
  other=$(awk -v ok="$*" 'BEGIN { split(ok, k, " "); for (i in k) want[k[i]] = 1 }
                          $1 != "answers" && !($1 in want)' "$WORK/$out.out")
  [ -z "$other" ] || fail "$out: outcomes beyond '$*': $(tr '\n' ' ' <"$WORK/$out.out")"
}
# Requests routed by the broker so far.
routed() {
  "$BUILD/broker/sharebus-broker" status --data "$WORK/broker" --json \
    | grep -o '"requests.routed":[0-9]*' | cut -d: -f2
}
routed_beyond() { [ "$(routed)" -gt "$1" ]; }
wait_routed_beyond() { wait_for 20 routed_beyond "$1"; }
rejected() { audit query --data "$WORK/broker" --kind policy-rejected --json | grep -c '"kind"' || true; }
rejected_beyond() { [ "$(rejected)" -gt "$1" ]; }
# An agent logged that it received policy VERSION after its first SKIP lines.
received() { logged_after "$WORK/$1.log" "$2" "policy $3 received from the broker"; }

setup_certs nhis koroad nts
write_policy "exam_date, vision_left, vision_right, hearing_left, hearing_right"
policy check "$WORK/policy" >/dev/null || fail "the test's policy does not check"
V1=$(version)
start_broker
for a in nhis koroad nts; do start_agent "$a"; done
start_nhis_backend
[ "$(serving_version)" = "$V1" ] || fail "broker serves $(serving_version), not $V1"

# ------------------------------------------------------------ rate limits
policy show "$WORK/policy" | grep -q "3/min" || fail "3/min does not show"
# One burst each, at once: koroad's 5/s rule, nts's own 5/s rule and
# koroad's unlimited rule. Only the first is limited: to its 5, and 5 more
# a second for as long as the burst lasts.
started=$(date +%s%N)
load koroad $REVIEW burst-koroad --count 40 --inflight 40 &
b1=$!
load nts $REVIEW burst-nts --count 5 --inflight 5 &
b2=$!
load koroad $RENEWAL burst-renewal --count 40 --inflight 40 &
b3=$!
wait $b1 || fail "load koroad: $(cat "$WORK/burst-koroad.log")"
most=$((5 + ($(date +%s%N) - started) / 200000000 + 1))
wait $b2 || fail "load nts: $(cat "$WORK/burst-nts.log")"
wait $b3 || fail "load renewal: $(cat "$WORK/burst-renewal.log")"
only_outcomes burst-koroad ok rate-limited
ok=$(outcome burst-koroad ok); limited=$(outcome burst-koroad rate-limited)
[ "$ok" -ge 5 ] && [ "$ok" -le "$most" ] && [ $((ok + limited)) -eq 40 ] \
  || fail "5/s rule, burst of 40: $ok ok (at most $most), $limited rate-limited"
pass "5/s: a burst of 40 gets $ok through and $limited rate-limited"
only_outcomes burst-nts ok
[ "$(outcome burst-nts ok)" -eq 5 ] || fail "nts: $(cat "$WORK/burst-nts.out")"
only_outcomes burst-renewal ok
[ "$(outcome burst-renewal ok)" -eq 40 ] || fail "renewal: $(cat "$WORK/burst-renewal.out")"
pass "another consumer's rule and the consumer's unlimited rule are unaffected"

load koroad $SURVEY burst-survey --count 10 --inflight 10
only_outcomes burst-survey ok rate-limited
[ "$(outcome burst-survey ok)" -eq 3 ] && [ "$(outcome burst-survey rate-limited)" -eq 7 ] \
  || fail "3/min rule, burst of 10: $(tr '\n' ' ' <"$WORK/burst-survey.out")"
sleep 1.5   # a rate read as 3/s would have refilled by now
out=$(request koroad --provider nhis --dataset $CHECKUP --purpose $SURVEY --subject $SUBJECT \
  2>&1) && fail "3/min rule: a 4th request within the minute succeeded: $out"
grep -q "^error: rate-limited: .*3 per minute" <<<"$out" || fail "3/min: $out"
pass "3/min: 3 of 10 through, still limited 1.5 s later"

# A reload keeps counting for a rule still limited, and forgets the count
# of one that no longer is: limited again later, it starts afresh. The
# rule's id holds a '/', as rule ids may.
RENEWAL_FIELDS="exam_date, vision_left, vision_right, hearing_left, hearing_right"
survey() { request koroad --provider nhis --dataset $CHECKUP --purpose $SURVEY --subject $SUBJECT; }
write_policy "$RENEWAL_FIELDS" 3/min
out=$(reload) || fail "reload failed: $out"
expect_error rate-limited survey
write_policy "$RENEWAL_FIELDS" none
out=$(reload) || fail "reload failed: $out"
survey >/dev/null || fail "the survey rule without its rate still limits"
write_policy "$RENEWAL_FIELDS"
out=$(reload) || fail "reload failed: $out"
[ "$(version)" = "$V1" ] || fail "the test's first policy did not come back"
for i in 1 2 3; do
  survey >/dev/null || fail "3/min again after a reload without it: request $i refused"
done
expect_error rate-limited survey
pass "reloads: a rule still limited keeps its count; one limited anew starts with a full bucket"

# ------------------------------------------------------ reload under load
load_start load1
PIDS+=("$LOAD")
n=$(routed)
wait_routed_beyond "$((n + 50))"

# A field removed from the rule.
write_policy "exam_date, vision_left, vision_right, hearing_left"
V2=$(version)
[ "$V2" != "$V1" ] || fail "the version did not change"
skip_nhis=$(lines "$WORK/nhis.log"); skip_koroad=$(lines "$WORK/koroad.log")
out=$(reload) || fail "reload failed: $out"
[ "$out" = "policy reloaded: version $V2" ] || fail "reload said: $out"
grep -q "policy $V2 loaded" "$WORK/broker.log" || fail "the broker did not log $V2"
audit query --data "$WORK/broker" --kind policy-loaded --json | grep -q "\"detail\":\"$V2\"" \
  || fail "no policy-loaded audit record for $V2"
wait_for 10 received nhis "$skip_nhis" "$V2"
wait_for 10 received koroad "$skip_koroad" "$V2"
pass "reload: version logged, audited and received by the agents"

out=$(request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT)
for f in exam_date vision_left vision_right hearing_left; do
  grep -q "\"$f\"" <<<"$out" || fail "field $f missing after the reload: $out"
done
grep -q hearing_right <<<"$out" && fail "a removed field still flows: $out"
expect_error denied request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT --fields exam_date,hearing_right
pass "the removed field no longer flows, and asking for it is denied"

# A broken policy: every error named, the old policy keeps serving.
cat >"$WORK/policy/broken.yaml" <<EOF
version: 1
rules:
  - id: dental
    consumer: koroad
    dataset: health.dental
    purposes: [$RENEWAL]
    fields: [exam_date]
    colour: blue   # and no consent
EOF
printf 'version: 1\ndatasets: [unclosed\n' >"$WORK/policy/syntax.yaml"
skip=$(lines "$WORK/broker.log")
n=$(routed)
out=$(reload 2>&1) && fail "a broken policy was accepted: $out"
for e in "broken.yaml:3:5: rule 'dental' is missing 'consent'" \
         "broken.yaml:5:14: dataset 'health.dental' is not declared" \
         "broken.yaml:8:5: unknown key 'colour' in a rule" \
         "syntax.yaml:3:1: flow sequence without a closing bracket"; do
  grep -q "$e" <<<"$out" || fail "reload does not report '$e': $out"
  logged_after "$WORK/broker.log" "$skip" "$e" || fail "the broker did not log '$e'"
done
grep -q "the old policy stays" <<<"$out" || fail "reload does not say the old policy stays: $out"
[ "$(serving_version)" = "$V2" ] || fail "after a refused reload, serving $(serving_version)"
audit query --data "$WORK/broker" --kind policy-rejected --json | grep -q "broken.yaml:3:5: rule 'dental' is missing 'consent'" \
  || fail "no policy-rejected audit record"
request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT \
  | grep -q vision_right || fail "the old policy does not serve after a refused reload"
wait_routed_beyond "$((n + 20))"
pass "broken policy: refused with every error, audited, the old policy serves"

# SIGHUP: the field comes back.
rm "$WORK/policy/broken.yaml" "$WORK/policy/syntax.yaml"
write_policy "exam_date, vision_left, vision_right, hearing_left, hearing_right"
V3=$(version)
[ "$V3" = "$V1" ] || fail "the first policy, rewritten, has version $V3, not $V1"
skip=$(lines "$WORK/broker.log")
skip_nhis=$(lines "$WORK/nhis.log"); skip_koroad=$(lines "$WORK/koroad.log")
kill -HUP "$BROKER_PID"
wait_for 10 logged_after "$WORK/broker.log" "$skip" "policy $V3 loaded"
wait_for 10 received nhis "$skip_nhis" "$V3"
wait_for 10 received koroad "$skip_koroad" "$V3"
[ "$(audit query --data "$WORK/broker" --kind policy-loaded --json | grep -c "\"detail\":\"$V3\"")" -ge 2 ] \
  || fail "SIGHUP: no second policy-loaded record for $V3"
out=$(request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL --subject $SUBJECT)
grep -q hearing_right <<<"$out" || fail "after SIGHUP, hearing_right does not flow again: $out"
pass "SIGHUP reloads: logged, audited, received, and followed"

# SIGHUP with a broken file: refused and audited as well.
printf 'version: 1\nrules: {\n' >"$WORK/policy/syntax.yaml"
skip=$(lines "$WORK/broker.log")
n=$(rejected)
kill -HUP "$BROKER_PID"
wait_for 10 logged_after "$WORK/broker.log" "$skip" "syntax.yaml:[0-9]*:[0-9]*: "
kill -0 "$BROKER_PID" || fail "the broker died on SIGHUP"
wait_for 10 rejected_beyond "$n"
[ "$(serving_version)" = "$V3" ] || fail "after a refused SIGHUP, serving $(serving_version)"
rm "$WORK/policy/syntax.yaml"
pass "SIGHUP with a broken file: refused, audited, the old policy serves"

n=$(routed)
wait_routed_beyond "$((n + 20))"
kill "$LOAD"
wait "$LOAD" || fail "load: $(cat "$WORK/load1.log")"
only_outcomes load1 ok
pass "no request failed across four reloads: $(tr '\n' ' ' <"$WORK/load1.out")"

# A rule removed: the next request is denied, and the swap fails nothing else.
load_start load2
PIDS+=("$LOAD")
n=$(routed)
wait_routed_beyond "$((n + 50))"
write_policy none
V4=$(version)
out=$(reload) || fail "reload failed: $out"
expect_error denied request koroad --provider nhis --dataset $CHECKUP --purpose $RENEWAL \
  --subject $SUBJECT
sleep 0.5
kill "$LOAD"
wait "$LOAD" || fail "load: $(cat "$WORK/load2.log")"
only_outcomes load2 ok denied
[ "$(outcome load2 ok)" -gt 0 ] && [ "$(outcome load2 denied)" -gt 0 ] \
  || fail "load across the rule's removal: $(tr '\n' ' ' <"$WORK/load2.out")"
pass "rule removed: the next request is denied; the load saw only ok then denied"
audit query --data "$WORK/broker" --kind policy-loaded --json | grep -q "\"detail\":\"$V4\"" \
  || fail "no policy-loaded audit record for $V4"

# SIGHUP while the broker idles in its poll: it reloads, and keeps running.
for round in 1 2 3; do
  skip=$(lines "$WORK/broker.log")
  kill -HUP "$BROKER_PID"
  wait_for 10 logged_after "$WORK/broker.log" "$skip" "policy $V4 loaded"
  sleep 0.2
  kill -0 "$BROKER_PID" 2>/dev/null || fail "the broker stopped on SIGHUP (round $round)"
done
request koroad --provider nhis --dataset $CHECKUP --purpose $REVIEW --subject $SUBJECT \
  | grep -q vision_left || fail "no request served after the idle SIGHUPs"
pass "SIGHUP while idle: reloaded three times, still serving"

stop_broker
audit verify --data "$WORK/broker" --certs "$CERTS" >/dev/null || fail "the audit log does not verify"
pass "broker stops cleanly; the audit log verifies"
