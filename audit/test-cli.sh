#!/usr/bin/env bash
# test-cli.sh SHAREBUS_AUDIT AUDIT_FIXTURE - what an auditor sees from
# sharebus-audit: output, exit statuses (0 ok, 1 failure, 2 usage), and that
# verify names the first bad sequence number and the fault for every kind of
# tampering. The fixture's story is in audit/audit-fixture.c: 16 records,
# broker checkpoints after 9 and 16, copies of both in the agent's store.
set -euo pipefail

sba=${1:?usage: test-cli.sh PATH/TO/sharebus-audit PATH/TO/audit-fixture}
fixture=${2:?usage: test-cli.sh PATH/TO/sharebus-audit PATH/TO/audit-fixture}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/stdout
err=$tmp/stderr
passed=0
failed=0

pass() { passed=$((passed + 1)); }
fail()
{
    failed=$((failed + 1))
    echo "FAIL (line ${BASH_LINENO[1]}): $*" >&2
    sed 's/^/    stdout: /' "$out" >&2 || true
    sed 's/^/    stderr: /' "$err" >&2 || true
}

# run CMD...: keeps stdout, stderr and the status; a sanitizer report fails.
run()
{
    set +e
    "$@" >"$out" 2>"$err"
    status=$?
    set -e
    if grep -qE 'runtime error:|Sanitizer' "$err"; then
        fail "sanitizer report from: $*"
    fi
}

# expect STATUS CMD...
expect()
{
    local want=$1
    shift
    run "$@"
    if [ "$status" -eq "$want" ]; then pass; else fail "expected $want, got $status: $*"; fi
}

# has FILE PATTERN: grep -E in stdout or stderr.
has()
{
    if grep -qE -- "$2" "$1"; then pass; else fail "no /$2/ in $(basename "$1")"; fi
}
hasnt()
{
    if grep -qE -- "$2" "$1"; then fail "unexpected /$2/ in $(basename "$1")"; else pass; fi
}

# expect_in STATUS INPUT CMD...: expect, with INPUT on standard input.
expect_in()
{
    local want=$1
    printf '%s' "$2" >"$tmp/stdin"
    shift 2
    run "$@" <"$tmp/stdin"
    if [ "$status" -eq "$want" ]; then pass; else fail "expected $want, got $status: $*"; fi
}

# lines N: stdout has N lines.
lines()
{
    local n
    n=$(wc -l <"$out")
    if [ "$n" -eq "$1" ]; then pass; else fail "expected $1 lines, got $n"; fi
}

# seqs "1 2 3": the JSON lines on stdout are exactly these records.
seqs()
{
    local got
    got=$(grep -oE '^\{"seq":[0-9]+' "$out" | cut -d: -f2 | tr '\n' ' ' | sed 's/ $//')
    if [ "$got" = "$1" ]; then pass; else fail "expected seqs '$1', got '$got'"; fi
}

"$fixture" make "$tmp/fx"
broker=$tmp/fx/broker
agent=$tmp/fx/agent
certs=$tmp/fx/certs
key=$certs/subject.key
alice=900101-1234567

# ------------------------------------------------------------ usage
expect 0 "$sba" --help
has "$out" '^usage: sharebus-audit COMMAND'
expect 0 "$sba" --version
has "$out" '^sharebus-audit [0-9]'
expect 2 "$sba"
expect 2 "$sba" frobnicate --data "$broker"
has "$err" "unknown command 'frobnicate'"
expect 2 "$sba" query
expect 2 "$sba" query --data "$broker" --bogus
expect 2 "$sba" query --data "$broker" --since yesterday
has "$err" '^sharebus-audit: --since yesterday: not a date or time'
# A day that does not exist is refused, not moved into the next month.
expect 2 "$sba" query --data "$broker" --since 2026-02-31
has "$err" '^sharebus-audit: --since 2026-02-31: not a date or time'
expect 2 "$sba" query --data "$broker" --until 2026-02-29T10:00:00Z
has "$err" '^sharebus-audit: --until 2026-02-29T10:00:00Z: not a date or time'
expect 2 "$sba" query --data "$broker" --since 2026-03-01T23:59:60Z
expect 0 "$sba" query --data "$broker" --json --since 2028-02-29
lines 0
expect 2 "$sba" query --data "$broker" --since 2026-03-05 --until 2026-03-01
expect 2 "$sba" query --data "$broker" --kind bogus
expect 2 "$sba" query --data "$broker" --limit ten
expect 2 "$sba" query --data "$broker" --subject "$alice"
has "$err" 'subject-key'
expect 2 "$sba" query --data "$broker" --subject --- --subject-key "$key"
expect 2 "$sba" report --data "$broker"
expect 2 "$sba" export --data "$broker" --format xml
expect 2 "$sba" query --data "$broker" extra-argument
# An option the command does not take is refused, not ignored: a filter on
# verify, report or checkpoint would otherwise seem to narrow what it did.
expect 2 "$sba" verify --data "$broker" --agency koroad
has "$err" '^sharebus-audit: verify does not take --agency'
expect 2 "$sba" report --data "$broker" --subject "$alice" --subject-key "$key" --kind timeout
has "$err" '^sharebus-audit: report does not take --kind'
expect 2 "$sba" export --data "$broker" --json
expect 2 "$sba" checkpoint --data "$broker" --json
expect 2 "$sba" reindex --data "$broker" --since 2026-03-01
expect 2 "$sba" query --data "$broker" --format csv
expect 0 "$sba" export --data "$broker" --limit 2
lines 2
expect 1 "$sba" query --data "$tmp/nowhere"
has "$err" 'nowhere/store'
expect 1 "$sba" query --data "$broker" --subject "$alice" --subject-key "$tmp/nokey"

# ------------------------------------------------------------ query
expect 0 "$sba" query --data "$broker"
lines 17
has "$out" '^ +SEQ +TIME +KIND'
has "$out" '^ +5  2026-03-01T09:06:00Z  request-routed +koroad>nhis +health.checkup.vision-hearing +driver-licence-renewal +allow +licence-renewal-uses-checkup +c-0001$'
has "$out" '^ +7 .* request-refused .* marketing +denied'
has "$err" '^16 record\(s\)'
expect 0 "$sba" query --data "$broker" --json
seqs "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16"
has "$out" '"kind":"reply-forwarded"'
has "$out" '"fields_delivered":\["exam_date","vision_left","vision_right","hearing_left","hearing_right"\]'
has "$out" '"error":"timeout"'
hasnt "$out" "$alice"
expect 0 "$sba" query --data "$broker" --json --subject "$alice" --subject-key "$key"
seqs "4 5 6 7 10 11 12 13 14 16"
has "$out" '"subject_ref":"[0-9a-f]{64}"'
hasnt "$out" "$alice"
expect 0 "$sba" query --data "$broker" --json --subject 850505-7654321 --subject-key "$key"
seqs "8 9"
expect 0 "$sba" query --data "$broker" --json --subject "$alice" --subject-key "$key" --agency koroad --kind request-routed
seqs "5 10"
expect 0 "$sba" query --data "$broker" --json --agency police
seqs "8 9"
expect 0 "$sba" query --data "$broker" --json --agency nhis
seqs "3 5 6 7 10 11"
expect 0 "$sba" query --data "$broker" --json --dataset vehicle.registration
seqs "8 9"
expect 0 "$sba" query --data "$broker" --json --purpose marketing
seqs "7"
expect 0 "$sba" query --data "$broker" --json --kind consent-revoked
seqs "16"
expect 0 "$sba" query --data "$broker" --json --since 2026-03-04
seqs "12 13 14 15 16"
expect 0 "$sba" query --data "$broker" --json --until 2026-03-01
seqs "1 2 3 4 5 6"
expect 0 "$sba" query --data "$broker" --json --since 2026-03-02T09:15:00Z --until 2026-03-03T09:00:01Z
seqs "8 9 10"
expect 0 "$sba" query --data "$broker" --json --agency koroad --limit 3
seqs "2 4 5"
expect 0 "$sba" query --data "$broker" --json --agency nobody
lines 0
expect 0 "$sba" query --data "$agent" --json
seqs "1 2"
has "$out" '"kind":"message-sent"'

# ------------------------------------------------------------ export
expect 0 "$sba" export --data "$broker"
seqs "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16"
has "$out" '"hash":"[0-9a-f]{64}"'
has "$err" 'exported 16 record'
expect 0 "$sba" export --data "$broker" --since 2026-03-03 --until 2026-03-03 --format csv
lines 3
has "$out" '^seq,time,time_ms,kind,message_id,correlation_id,from,to,dataset,purpose,subject_ref,'
has "$out" '^10,2026-03-03T09:00:00Z,[0-9]+,request-routed,'
has "$out" '^11,.*,timeout,.*,no reply within 5000 ms,'
expect 0 "$sba" export --data "$broker" --kind request-routed --format csv
has "$out" 'exam_date;vision_left;vision_right;hearing_left;hearing_right'

# ------------------------------------------------------------ verify
expect 0 "$sba" verify --data "$broker" --certs "$certs"
has "$out" '^intact: 16 records, 2 checkpoints, head 16 [0-9a-f]{64}$'
expect 0 "$sba" verify --data "$broker" --certs "$certs" --json
has "$out" '"intact":true,"records":16,"checkpoints":2,"head_seq":16'
has "$out" '"signatures_checked":true'
expect 0 "$sba" verify --data "$broker"
has "$err" 'signatures are not checked'
expect 0 "$sba" verify --data "$broker" --json
has "$out" '"intact":true,.*"signatures_checked":false'
expect 0 "$sba" verify --data "$agent" --certs "$certs"
has "$out" '^intact: 2 records, 0 checkpoints, head 2 '
expect 1 "$sba" verify --data "$broker" --certs "$tmp/nowhere"
expect 1 "$sba" verify --data "$broker" --certs "$certs" --signer nosuch
has "$err" "no certificate of 'nosuch'"

# ------------------------------------------------------------ checkpoint
expect 0 "$sba" checkpoint --data "$agent" --out "$tmp/latest.json"
lines 0
has "$tmp/latest.json" '^\{"seq":16,"head_hash":"[0-9a-f]{64}","time_ms":[0-9]+,"time":"[0-9T:Z-]+","signer":"broker","signature":"[0-9a-f]{128}"\}$'
expect 0 "$sba" checkpoint --data "$agent" --all
lines 2
has "$out" '^\{"seq":9,'
cp "$out" "$tmp/all.json"
expect 0 "$sba" checkpoint --data "$broker"
has "$out" '^\{"seq":16,'
expect 0 "$sba" verify --data "$broker" --certs "$certs" --checkpoint "$tmp/all.json" --checkpoint "$tmp/latest.json"
has "$out" '^intact: 16 records, 5 checkpoints, head 16 '
echo '{"seq":1}' >"$tmp/junk.json"
expect 1 "$sba" verify --data "$broker" --certs "$certs" --checkpoint "$tmp/junk.json"
has "$err" 'junk.json:1: not a sharebus checkpoint'
expect 1 "$sba" verify --data "$broker" --checkpoint "$tmp/missing.json"
sed -E 's/"signature":"0/"signature":"X/; s/"signature":"[1-9a-f]/"signature":"0/; s/"signature":"X/"signature":"1/' "$tmp/latest.json" >"$tmp/forged.json"
expect 1 "$sba" verify --data "$broker" --certs "$certs" --checkpoint "$tmp/forged.json"
has "$out" '^NOT INTACT: bad checkpoint at seq 16: '

# ------------------------------------------------------------ report
expect 0 "$sba" report --data "$broker" --subject "$alice" --subject-key "$key"
has "$out" '^Access report for the person with subject reference [0-9a-f]{16}'
has "$out" '^2026-03-01 09:06  koroad obtained health.checkup.vision-hearing \(exam_date, vision_left, vision_right, hearing_left, hearing_right\) from nhis\.$'
has "$out" 'purpose: driver-licence-renewal; rule: licence-renewal-uses-checkup; consent: c-0001; audit records 5 and 6$'
has "$out" '^2026-03-02 09:00  koroad asked nhis for health.checkup.vision-hearing \(vision_left, blood_pressure\): refused, nothing was shared: no policy rule allows it'
has "$out" 'no answer in time, nothing was shared'
has "$out" 'nts received resident.address-changed \(new_address, moved_on\) from mois'
has "$out" 'you gave consent c-0001'
has "$out" 'consent c-0001 for health.checkup.vision-hearing was withdrawn'
hasnt "$out" "$alice"
hasnt "$out" 'police'
expect 0 "$sba" report --data "$broker" --subject "9001011234567" --subject-key "$key" --certs "$certs"
has "$out" 'koroad \(Road Traffic Authority\) obtained'
expect 0 "$sba" report --data "$broker" --subject "$alice" --subject-key "$key" --json
has "$out" '"event":"obtained","from":"koroad","to":"nhis","dataset":"health.checkup.vision-hearing","fields":\["exam_date",'
has "$out" '"seqs":\[5,6\]'
has "$out" '"event":"refused".*"error":"denied"'
expect 0 "$sba" report --data "$broker" --subject 111111-1111111 --subject-key "$key"
has "$out" 'Nothing on record'
# --subject - reads the national id from standard input, where other users
# cannot read it (they can read a command line, in /proc/PID/cmdline).
expect_in 0 "$alice"$'\n' "$sba" report --data "$broker" --subject - --subject-key "$key"
has "$out" '^2026-03-01 09:06  koroad obtained health.checkup.vision-hearing'
has "$out" 'consent c-0001 for health.checkup.vision-hearing was withdrawn'
hasnt "$out" "$alice"
hasnt "$out" 'police'
expect_in 0 "9001011234567"$'\r\n' "$sba" report --data "$broker" --subject - --subject-key "$key" --json
has "$out" '"seqs":\[5,6\]'
expect_in 0 "$alice" "$sba" query --data "$broker" --json --subject - --subject-key "$key"
seqs "4 5 6 7 10 11 12 13 14 16"
expect_in 0 "850505-7654321"$'\n'"$alice"$'\n' "$sba" query --data "$broker" --json --subject - --subject-key "$key"
seqs "8 9"
expect_in 0 "$alice" "$sba" export --data "$broker" --subject - --subject-key "$key" --kind request-routed
seqs "5 10"
expect_in 2 "" "$sba" query --data "$broker" --subject - --subject-key "$key"
has "$err" '^sharebus-audit: --subject -: no national id on standard input'
expect_in 2 "---"$'\n' "$sba" report --data "$broker" --subject - --subject-key "$key"
has "$err" 'standard input does not hold a national id'
expect_in 2 "$alice" "$sba" report --data "$broker" --subject -
has "$err" 'subject-key'
# A request at the end of the period is told with its answer, which came
# after the period; the answer is not told again in the next period.
rm -rf "$tmp/m"
cp -r "$broker" "$tmp/m"
"$fixture" midnight "$tmp/m" "$key"
expect 0 "$sba" report --data "$tmp/m" --subject "$alice" --subject-key "$key" --since 2026-03-06 --until 2026-03-06
has "$out" '^2 audit record\(s\) in '
has "$out" '^2026-03-06 23:59  koroad obtained health.checkup.vision-hearing \(exam_date\) from nhis\.$'
has "$out" 'audit records 17 and 18$'
hasnt "$out" 'no answer is on record'
expect 0 "$sba" report --data "$tmp/m" --subject "$alice" --subject-key "$key" --since 2026-03-07 --json
has "$out" '"records":0,"entries":\[\]'
expect 0 "$sba" report --data "$tmp/m" --subject "$alice" --subject-key "$key" --since 2026-03-06 --until 2026-03-06 --json
has "$out" '"records":2,.*"event":"obtained",.*"seqs":\[17,18\]'

# ------------------------------------------------------------ tampering
# tamper HOW SEQ: a fresh copy of the broker's store, damaged.
tamper()
{
    rm -rf "$tmp/t"
    cp -r "$broker" "$tmp/t"
    "$fixture" "$1" "$tmp/t" "${2:-0}" >/dev/null
}

tamper flip 5
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs"
has "$out" '^NOT INTACT: altered record at seq 5: '
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs" --json
has "$out" '"intact":false,.*"fault":"altered record","seq":5,'
expect 1 "$sba" query --data "$tmp/t" --json
has "$err" 'damaged'
seqs "1 2 3 4 6 7 8 9 10 11 12 13 14 15 16"

tamper delete 9
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs"
has "$out" '^NOT INTACT: missing record at seq 9: '

tamper truncate 14
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs"
has "$out" '^NOT INTACT: truncated log at seq 14: .*checkpoint'

# A rewrite is detected at the first checkpoint after it, but every record
# after the last checkpoint that still holds is suspect, and verify says so.
tamper rewrite 12
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs"
has "$out" '^NOT INTACT: altered record at seq 16: .*history was rewritten; records 10 to 16 cannot be trusted \(the last checkpoint that holds is at seq 9\)$'
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs" --json
has "$out" '"fault":"altered record","seq":16,.*"untrusted_from":10,"untrusted_to":16'

tamper rewrite 3
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs"
has "$out" '^NOT INTACT: altered record at seq 9: .*rewritten; records 1 to 9 cannot be trusted \(no checkpoint before seq 9 holds\)$'

# An operator with the broker's key who rewrites history and signs it again
# for the seqs agents hold: the agent keeps its genuine copies and the new
# ones apart, and the genuine copies still catch the rewrite.
rm -rf "$tmp/a"
cp -r "$agent" "$tmp/a"
expect 0 "$fixture" equivocate "$tmp/t" "$tmp/a" "$certs/broker.key" 9 16
has "$out" '^checkpoint 9: exists$'
has "$out" '^checkpoint 16: exists$'
expect 0 "$sba" verify --data "$tmp/t" --certs "$certs"
has "$out" '^intact: 16 records, 2 checkpoints'
expect 0 "$sba" checkpoint --data "$tmp/a" --out "$tmp/held.json"
has "$err" 'WARNING: this store kept 2 checkpoint\(s\) .* signed two histories'
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs" --checkpoint "$tmp/held.json"
has "$out" '^NOT INTACT: conflicting checkpoints at seq 16: the stored checkpoint of .* and the given one of .* name different heads for record 16 \(both signed by the broker.s key: it signed two histories\); the log has the stored one of [0-9TZ:-]+; records 1 to 16 cannot be trusted \(no given checkpoint before seq 16 holds; stored ones do not count once the key signed two histories\)$'
expect 0 "$sba" checkpoint --data "$tmp/a" --all
lines 4
cp "$out" "$tmp/both.json"
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs" --checkpoint "$tmp/both.json" --json
has "$out" '"fault":"conflicting checkpoints","seq":9,'
# Several agencies' exports that disagree, with no stored checkpoint at all.
"$fixture" drop-checkpoints "$tmp/t"
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs" --checkpoint "$tmp/both.json"
has "$out" '^NOT INTACT: conflicting checkpoints at seq 9: the given checkpoint of .* and the given one of .*; the log has the given one of '
expect 0 "$sba" verify --data "$tmp/a" --certs "$certs"
has "$err" 'WARNING: this store kept 2 checkpoint'

# A forger who rewrites and drops the stored checkpoints: the agent's copy.
tamper rewrite 3
"$fixture" drop-checkpoints "$tmp/t"
expect 0 "$sba" verify --data "$tmp/t" --certs "$certs"
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs" --checkpoint "$tmp/latest.json"
has "$out" '^NOT INTACT: altered record at seq 16: .*rewritten'

tamper forge-checkpoint
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs"
has "$out" '^NOT INTACT: bad checkpoint at seq 16: .*not signed'

# ------------------------------------------------------------ indexes
# Queries and reports find records through the indexes: a record missing
# from one is hidden without a word, so verify holds every index against
# the records, names the index and the first record, and reindex rebuilds
# them from the log.
rm -rf "$tmp/t"
cp -r "$broker" "$tmp/t"
"$fixture" unindex "$tmp/t" subject 5
"$fixture" unindex "$tmp/t" subject 6
expect 0 "$sba" report --data "$tmp/t" --subject "$alice" --subject-key "$key"
hasnt "$out" 'koroad obtained'
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs"
has "$out" '^NOT INTACT: bad index at seq 5: record 5 has no entry in the subject index; .*may be incomplete until the indexes are rebuilt: sharebus-audit reindex'
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs" --json
has "$out" '"intact":false,.*"fault":"bad index","seq":5,"index":"subject",'
"$fixture" unindex "$tmp/t" time 3
expect 1 "$sba" verify --data "$tmp/t" --certs "$certs"
has "$out" '^NOT INTACT: bad index at seq 3: record 3 has no entry in the time index at 2026-03-01T09:02:00Z'
expect 0 "$sba" reindex --data "$tmp/t"
has "$out" '^reindexed: 16 records$'
expect 0 "$sba" verify --data "$tmp/t" --certs "$certs"
has "$out" '^intact: 16 records, 2 checkpoints, head 16 '
expect 0 "$sba" report --data "$tmp/t" --subject "$alice" --subject-key "$key"
has "$out" '^2026-03-01 09:06  koroad obtained health.checkup.vision-hearing'
# A time index entry: a window from --since started after the record.
rm -rf "$tmp/t"
cp -r "$broker" "$tmp/t"
"$fixture" unindex "$tmp/t" time 12
expect 0 "$sba" query --data "$tmp/t" --json --since 2026-03-04
seqs "13 14 15 16"
expect 1 "$sba" verify --data "$tmp/t"
has "$out" '^NOT INTACT: bad index at seq 12: record 12 has no entry in the time index'
"$fixture" unindex "$tmp/t" agency 12
"$fixture" unindex "$tmp/t" dataset 9
expect 1 "$sba" verify --data "$tmp/t"
has "$out" '^NOT INTACT: bad index at seq 9: record 9 has no entry in the dataset index under .vehicle.registration.;'
expect 0 "$sba" reindex --data "$tmp/t"
expect 0 "$sba" query --data "$tmp/t" --json --since 2026-03-04
seqs "12 13 14 15 16"
# The chain comes first; reindex takes no record that does not decode.
"$fixture" flip "$tmp/t" 5 >/dev/null
"$fixture" unindex "$tmp/t" subject 4
expect 1 "$sba" verify --data "$tmp/t"
has "$out" '^NOT INTACT: altered record at seq 5: '
expect 1 "$sba" reindex --data "$tmp/t"
has "$err" 'record 5 is damaged'
has "$err" 'the indexes were not rebuilt'
expect 1 "$sba" reindex --data "$tmp/nowhere"
if [ -e "$tmp/nowhere" ]; then fail "reindex made a store"; else pass; fi
expect 2 "$sba" reindex

# ------------------------------------------------------------ rotation
# After a broker key rotation (the old certificate kept and revoked), the
# old key's checkpoints still hold for the time before its revocation.
"$fixture" rotate "$tmp/fx"
expect 0 "$sba" verify --data "$broker" --certs "$certs"
has "$out" '^intact: 18 records, 3 checkpoints, head 18 '
expect 0 "$sba" checkpoint --data "$agent" --all
lines 3
cp "$out" "$tmp/all3.json"
expect 0 "$sba" verify --data "$broker" --certs "$certs" --checkpoint "$tmp/all3.json"
has "$out" '^intact: 18 records, 6 checkpoints, head 18 '
expect 1 "$sba" verify --data "$broker" --certs "$certs" --checkpoint "$tmp/fx/late.cp"
has "$out" '^NOT INTACT: bad checkpoint at seq 0: .*not valid then'

echo "audit-cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
