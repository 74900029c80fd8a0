#!/usr/bin/env bash
# The sharebus-policy command line: exit codes, output, JSON.
#   policy/test-cli.sh PATH/TO/sharebus-policy PATH/TO/policy/examples
set -uo pipefail
tool=${1:?usage: test-cli.sh SHAREBUS_POLICY EXAMPLES_DIR}
examples=${2:?usage: test-cli.sh SHAREBUS_POLICY EXAMPLES_DIR}
tmp=$(mktemp -d /tmp/sb-test-policy-cli-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# The --json checks read the output with jq (scripts/deps installs it):
# without it they would pass by checking nothing.
if ! command -v jq >/dev/null; then
  echo "FAIL jq is not installed (scripts/deps installs it): the --json output cannot be checked"
  exit 1
fi

# expect STATUS DESCRIPTION -- COMMAND...: runs it, keeps stdout and stderr
expect() {
  local want=$1 what=$2; shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" -ne "$want" ]; then
    fail "$what: exit $got, expected $want"; sed 's/^/  | /' "$tmp/out" "$tmp/err"
  else
    echo "ok   $what"
  fi
}

# contains FILE TEXT: the file holds this exact line
contains() {
  grep -qxF -- "$2" "$1" || { fail "$(basename "$1") lacks: $2"; sed 's/^/  | /' "$1"; }
}


# ------------------------------------------------------------- usage
expect 0 "--help prints usage" -- "$tool" --help
grep -q '^usage: sharebus-policy' "$tmp/out" || fail "--help: no usage on stdout"
expect 0 "--version" -- "$tool" --version
grep -q '^sharebus-policy [0-9]' "$tmp/out" || fail "--version output"
expect 2 "no arguments is a usage error" -- "$tool"
grep -q '^usage:' "$tmp/err" || fail "usage not on stderr"
[ -s "$tmp/out" ] && fail "usage error printed to stdout"
expect 2 "unknown command" -- "$tool" frobnicate "$examples"
expect 2 "unknown option" -- "$tool" check "$examples" --frob
expect 2 "check without a directory" -- "$tool" check
expect 2 "extra argument" -- "$tool" check "$examples" extra
# An option the command does not take is refused, not ignored.
expect 2 "check does not take --json" -- "$tool" check "$examples" --json
grep -q "check does not take --json" "$tmp/err" || fail "no message for check --json"
[ -s "$tmp/out" ] && fail "check --json printed to stdout"
expect 2 "show does not take --consumer" -- "$tool" show "$examples" --consumer koroad
expect 2 "check does not take --at" -- "$tool" check "$examples" --at 2026-01-01

# ------------------------------------------------------------- check
expect 0 "check of the examples is clean" -- "$tool" check "$examples"
grep -qE "^$examples: 5 datasets, 6 rules, 1 topics, version [0-9a-f]{64}\$" "$tmp/out" \
  || { fail "check summary"; cat "$tmp/out"; }
version=$(sed -n 's/.*version \([0-9a-f]*\)$/\1/p' "$tmp/out")

mkdir -p "$tmp/bad"
cat >"$tmp/bad/a.yaml" <<'EOF'
version: 1
datasets:
  health.checkup:
    provider: nhis
    subject: resident
    colour: red
    fields: [exam_date, vision_left]
EOF
cat >"$tmp/bad/b.yaml" <<'EOF'
version: 1
rules:
  - id: renew
    consumer: koroad
    dataset: health.checkup
    purposes: [driver-licence-renewal]
    fields: [exam_date, shoe_size]
    consent: maybe
    rate: 50/hour
EOF
echo "not yaml at all: [" >"$tmp/bad/notes.txt"
expect 1 "check reports every error" -- "$tool" check "$tmp/bad"
contains "$tmp/out" "$tmp/bad/a.yaml:6:5: unknown key 'colour' in a dataset (expected provider, subject, fields, description)"
contains "$tmp/out" "$tmp/bad/b.yaml:7:25: field 'shoe_size' is not declared by dataset 'health.checkup'"
contains "$tmp/out" "$tmp/bad/b.yaml:8:14: consent must be 'required' or 'none', not 'maybe'"
contains "$tmp/out" "$tmp/bad/b.yaml:9:11: rate '50/hour' is not N/s or N/min with N from 1 to 4294967295"
contains "$tmp/out" "$tmp/bad: 4 errors"
expect 1 "check of a missing directory" -- "$tool" check "$tmp/none"
contains "$tmp/out" "$tmp/none: cannot read the directory: No such file or directory"
expect 1 "check with an unreadable trust store" -- "$tool" check "$examples" --certs "$tmp/none"
grep -q "errors\?$" "$tmp/out" && fail "check counts policy errors when the trust store did not load"
grep -q "$tmp/none" "$tmp/err" || fail "check does not name the unreadable trust store"

# Files that each fit, but not together in the one message that takes the
# policy to the agents: refused at check (and so at reload).
mkdir "$tmp/huge"
cp "$examples"/*.yaml "$tmp/huge/"
for n in 1 2; do
  { echo "version: 1"; head -c 600000 /dev/zero | tr '\0' '#' | fold -w 100; } >"$tmp/huge/notes$n.yaml"
done
expect 1 "check of a policy too large to send to the agents" -- "$tool" check "$tmp/huge"
grep -q "the policy files come to [0-9]* bytes: more than the [0-9]* that one message to the agents carries" \
  "$tmp/out" "$tmp/err" || fail "too large a policy: no reason given"

# ----------------------------------------------------------- explain
renew=(--consumer koroad --dataset health.checkup.vision-hearing --purpose driver-licence-renewal)
expect 0 "explain: allowed" -- "$tool" explain "$examples" "${renew[@]}" --at 2026-11-26
contains "$tmp/out" "decision: allow"
contains "$tmp/out" "rule:     licence-renewal-uses-checkup ($examples/health.yaml:27)"
contains "$tmp/out" "consent:  required, recorded by koroad"
contains "$tmp/out" "rate:     50/s"
contains "$tmp/out" "valid:    2014-03-28..2030-12-31"
contains "$tmp/out" "fields:   exam_date, vision_left, vision_right, hearing_left, hearing_right"

expect 0 "explain: allowed, some fields" -- "$tool" explain "$examples" "${renew[@]}" \
  --fields vision_left,vision_right --at 2026-11-26
contains "$tmp/out" "fields:   vision_left, vision_right"

expect 1 "explain: a field the rule leaves out is denied" -- "$tool" explain "$examples" \
  "${renew[@]}" --fields exam_date,blood_pressure --at 2026-11-26
contains "$tmp/out" "decision: deny"
contains "$tmp/out" "reason:   field 'blood_pressure' is not allowed by rule 'licence-renewal-uses-checkup'"

expect 1 "explain: purpose not listed" -- "$tool" explain "$examples" --consumer koroad \
  --dataset health.checkup.vision-hearing --purpose marketing
contains "$tmp/out" "reason:   purpose 'marketing' is not allowed for koroad on health.checkup.vision-hearing (allowed: driver-licence-renewal)"

expect 1 "explain: after the window" -- "$tool" explain "$examples" "${renew[@]}" --at 2031-01-01
contains "$tmp/out" "reason:   rule 'licence-renewal-uses-checkup' is not valid at this time (valid 2014-03-28..2030-12-31)"

expect 1 "explain: unknown dataset" -- "$tool" explain "$examples" --consumer koroad \
  --dataset health.dna --purpose driver-licence-renewal
contains "$tmp/out" "error:    unknown-dataset"

expect 1 "explain: no rule" -- "$tool" explain "$examples" --consumer nts \
  --dataset health.checkup.vision-hearing --purpose driver-licence-renewal
contains "$tmp/out" "reason:   no rule lets nts obtain health.checkup.vision-hearing"

expect 1 "explain: a broken policy decides nothing" -- "$tool" explain "$tmp/bad" "${renew[@]}"
grep -q "a.yaml:6:5: unknown key" "$tmp/err" || fail "explain: errors of a broken policy on stderr"

expect 2 "explain without --purpose" -- "$tool" explain "$examples" --consumer koroad \
  --dataset health.checkup.vision-hearing
expect 2 "explain with a bad --at" -- "$tool" explain "$examples" "${renew[@]}" --at soon

expect 0 "explain --json" -- "$tool" explain "$examples" "${renew[@]}" --at 2026-11-26 --json
[ "$(jq -r .decision "$tmp/out")" = allow ] || fail "json decision"
[ "$(jq -r .rule.id "$tmp/out")" = licence-renewal-uses-checkup ] || fail "json rule"
[ "$(jq -r '.flow | length' "$tmp/out")" = 5 ] || fail "json flow"
[ "$(jq -r .consent "$tmp/out")" = required ] || fail "json consent"
expect 1 "explain --json, denied" -- "$tool" explain "$examples" "${renew[@]}" --at 2031-01-01 --json
[ "$(jq -r .decision "$tmp/out")" = deny ] || fail "json deny"
[ "$(jq -r .error "$tmp/out")" = denied ] || fail "json error"

# -------------------------------------------------------------- show
expect 0 "show" -- "$tool" show "$examples"
contains "$tmp/out" "version $version"
contains "$tmp/out" "  licence-renewal-uses-checkup ($examples/health.yaml:27)"
contains "$tmp/out" "    subscriber koroad: new_address"
expect 0 "show --json" -- "$tool" show "$examples" --json
[ "$(jq -r .version "$tmp/out")" = "$version" ] || fail "json version"
[ "$(jq -r '.rules | length' "$tmp/out")" = 6 ] || fail "json rules"
[ "$(jq -r '.datasets | length' "$tmp/out")" = 5 ] || fail "json datasets"
[ "$(jq -r '.topics[0].subscribers | length' "$tmp/out")" = 3 ] || fail "json subscribers"
[ "$(jq -r '.files | join(",")' "$tmp/out")" = "events.yaml,health.yaml,vehicle.yaml" ] \
  || fail "json files"
expect 1 "show of a broken policy" -- "$tool" show "$tmp/bad"

# A description of several lines: each after '|', none at the margin where
# it would read as show's own ("rules (0)" below is the description's).
mkdir "$tmp/described"
cat >"$tmp/described/p.yaml" <<'END'
version: 1
datasets:
  d:
    provider: nhis
    subject: none
    description: |
      Line one

      rules (0)
    fields: [a]
rules:
  - {id: r, consumer: koroad, dataset: d, purposes: [p], fields: [a], consent: none}
END
expect 0 "show of a description of several lines" -- "$tool" show "$tmp/described"
contains "$tmp/out" "    | Line one"
contains "$tmp/out" "    |"
contains "$tmp/out" "    | rules (0)"
contains "$tmp/out" "rules (1)"
grep -qx "rules (0)" "$tmp/out" && fail "show: a description's line at the margin"

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "all sharebus-policy CLI checks passed"
