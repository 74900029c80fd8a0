#!/usr/bin/env bash
# test-cli.sh SHAREBUS_CERT - what an administrator sees from sharebus-cert:
# exit statuses, messages, file modes, and that a refused or failed command
# leaves the certificate directory exactly as it was.
#
# Decisions this test pins down (documented in sharebus-cert(1)):
# - bad arguments (a bad agency id or name, an unknown option) exit 2, other
#   failures exit 1;
# - a certificate file that does not verify (tampered, another root) is
#   listed by `list` with state "invalid", named on stderr as "left out"
#   (the broker and agents ignore it), and `list` then exits 1.
set -euo pipefail

sbc=${1:?usage: test-cli.sh PATH/TO/sharebus-cert}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/stdout
err=$tmp/stderr
ca=$tmp/ca
passed=0
failed=0

pass() { passed=$((passed + 1)); }
fail()
{
    failed=$((failed + 1))
    echo "FAIL (line ${BASH_LINENO[1]}): $*" >&2
    sed 's/^/    stderr: /' "$err" >&2 || true
}

# run CMD...: runs it, keeping stdout, stderr and the exit status. A
# sanitizer report is a failure whatever the status (UBSan exits 1).
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

expect_ok()
{
    run "$@"
    if [ "$status" -eq 0 ]; then pass; else fail "expected success (got $status): $*"; fi
}

# expect_fail CMD...: a clean refusal, exit 1 or 2 (not a crash, not 0).
expect_fail()
{
    run "$@"
    if [ "$status" -eq 1 ] || [ "$status" -eq 2 ]; then
        pass
    else
        fail "expected exit 1 or 2 (got $status): $*"
    fi
}

# expect_status N CMD...
expect_status()
{
    local want=$1
    shift
    run "$@"
    if [ "$status" -eq "$want" ]; then pass; else fail "expected exit $want (got $status): $*"; fi
}

# expect_err REGEX / expect_out REGEX: about the last command run.
expect_err()
{
    if grep -qE -- "$1" "$err"; then pass; else fail "stderr lacks /$1/"; fi
}
expect_out()
{
    if grep -qE -- "$1" "$out"; then pass; else fail "stdout lacks /$1/: $(head -c 300 "$out")"; fi
}
expect_no_out()
{
    if grep -qE -- "$1" "$out"; then fail "stdout has /$1/"; else pass; fi
}

expect_true()
{
    local what=$1
    shift
    if "$@"; then pass; else fail "$what"; fi
}

mode() { stat -c %a "$1"; }
sum() { sha256sum "$1" | cut -d' ' -f1; }

# Every file of a directory with its checksum and mode: equal snapshots
# mean nothing was written, removed or left behind.
snapshot()
{
    (cd "$1" && find . -mindepth 1 -printf '%p %m ' -exec sh -c \
        'if [ -f "$1" ]; then sha256sum < "$1"; else echo; fi' _ {} \; | sort)
}
expect_unchanged()
{
    if [ "$(snapshot "$1")" = "$2" ]; then pass; else fail "$1 changed: $3"; fi
}

json_ok()
{
    if command -v python3 >/dev/null; then
        python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$out"
    else
        grep -qE '^[[{].*[]}]$' "$out"
    fi
}

# ------------------------------------------------------------ usage
expect_status 0 "$sbc" --help
expect_out '^usage: sharebus-cert COMMAND'
expect_out 'issue --dir DIR'
expect_status 0 "$sbc" --version
expect_out '^sharebus-cert [0-9]+\.[0-9]+'
expect_status 2 "$sbc" --bogus
expect_err 'usage: sharebus-cert'
expect_status 2 "$sbc" frobnicate --dir "$ca"
expect_err "unknown command 'frobnicate'"
expect_status 2 "$sbc"
expect_status 2 "$sbc" list
expect_err 'needs --dir'
expect_status 2 "$sbc" list --dir "$ca" --days 3
expect_err 'list does not take --days'
expect_status 2 "$sbc" verify --dir "$ca"
expect_err 'needs a FILE'
expect_status 2 "$sbc" issue --dir "$ca" --agency nhis --name N --days 0
expect_err '--days'
expect_status 2 "$sbc" issue --dir "$ca" --agency nhis --name N --days 4294967297
expect_status 2 "$sbc" revoke --dir "$ca" --agency nhis --serial -1
expect_status 2 "$sbc" issue --dir "$ca" --agency nhis
expect_err 'needs --name'
expect_true "usage errors must not create $ca" test ! -e "$ca"

# ------------------------------------------------------------ init
expect_ok "$sbc" init --dir "$ca"
expect_out 'root of trust created'
for f in root.cert root.key subject.key serial; do
    expect_true "init did not write $f" test -f "$ca/$f"
done
expect_true "root.key mode $(mode "$ca/root.key")" test "$(mode "$ca/root.key")" = 600
expect_true "subject.key mode $(mode "$ca/subject.key")" test "$(mode "$ca/subject.key")" = 600
expect_true "directory mode $(mode "$ca")" test "$(mode "$ca")" = 700
expect_true "root.cert is public" test "$(mode "$ca/root.cert")" = 644
root_key=$(sum "$ca/root.key")
root_cert=$(sum "$ca/root.cert")
subject_key=$(sum "$ca/subject.key")

before=$(snapshot "$ca")
expect_status 1 "$sbc" init --dir "$ca"
expect_err 'root.key: already exists'
expect_true "second init changed root.key" test "$(sum "$ca/root.key")" = "$root_key"
expect_true "second init changed root.cert" test "$(sum "$ca/root.cert")" = "$root_cert"
expect_true "second init changed subject.key" test "$(sum "$ca/subject.key")" = "$subject_key"
expect_unchanged "$ca" "$before" "by a second init"

# A directory holding only a subject key: init must refuse, not replace it.
mkdir "$tmp/partial"
cp "$ca/subject.key" "$tmp/partial/"
before=$(snapshot "$tmp/partial")
expect_status 1 "$sbc" init --dir "$tmp/partial"
expect_err 'subject.key: already exists'
expect_unchanged "$tmp/partial" "$before" "init next to an old subject.key"

expect_status 1 "$sbc" init --dir "$tmp/no/such/parent"
expect_true "failed init created a directory" test ! -e "$tmp/no"

# ------------------------------------------------------------ issue
expect_ok "$sbc" issue --dir "$ca" --agency nhis --name "National Health Insurance Service"
expect_out 'serial 1\b'
expect_true "nhis.cert missing" test -f "$ca/nhis.cert"
expect_true "nhis.key mode $(mode "$ca/nhis.key")" test "$(mode "$ca/nhis.key")" = 600
expect_true "nhis.cert is public" test "$(mode "$ca/nhis.cert")" = 644
expect_true "the certificate holds no secret" eval '! grep -qi secret "$ca/nhis.cert"'
expect_ok "$sbc" verify "$ca/nhis.cert" --dir "$ca"
expect_out 'valid agency certificate of nhis \(serial 1\)'

nhis_cert=$(sum "$ca/nhis.cert")
nhis_key=$(sum "$ca/nhis.key")
before=$(snapshot "$ca")
expect_status 1 "$sbc" issue --dir "$ca" --agency nhis --name "Another"
expect_err 'nhis.cert: already exists'
expect_true "re-issue changed nhis.cert" test "$(sum "$ca/nhis.cert")" = "$nhis_cert"
expect_true "re-issue changed nhis.key" test "$(sum "$ca/nhis.key")" = "$nhis_key"
expect_unchanged "$ca" "$before" "by a refused re-issue (serial must not be used up)"

for id in NHIS -x a/b abcdefghijklmnopqrstuvwxyz0123456 broker root subject nhis.2 "" \
          "../evil" "nhis " "x\$y"; do
    expect_fail "$sbc" issue --dir "$ca" --agency "$id" --name "Bad Id"
    expect_err 'invalid agency id'
done
expect_unchanged "$ca" "$before" "by refused agency ids"
expect_true "a/b left a directory" test ! -e "$ca/a"

for name in "$(printf 'ctl\001x')" 'say "hi"' "$(printf 'x%.0s' {1..129})" \
            "$(printf 'bad\377utf8')" "$(printf 'tab\there')"; do
    expect_status 2 "$sbc" issue --dir "$ca" --agency okname --name "$name"
    expect_err 'invalid name'
done
expect_status 2 "$sbc" issue --dir "$ca" --agency nhis2 --name N --days 36501
expect_unchanged "$ca" "$before" "by refused names"

expect_ok "$sbc" issue --dir "$ca" --agency koroad --name "도로교통공단 (KoROAD)" --days 30
expect_out 'serial 2\b'
expect_ok "$sbc" issue --dir "$ca" --broker
expect_true "broker.key mode" test "$(mode "$ca/broker.key")" = 600
expect_status 2 "$sbc" issue --dir "$ca" --broker --agency x --name X
expect_ok "$sbc" show "$ca/broker.cert"
expect_out '^kind +broker$'
expect_out '^agency +broker$'
expect_ok "$sbc" show "$ca/koroad.cert"
expect_out '^name +도로교통공단 \(KoROAD\)$'

# Issuing without a root: refused, and nothing is written.
mkdir "$tmp/empty"
expect_status 1 "$sbc" issue --dir "$tmp/empty" --agency nhis --name N
expect_err 'root.cert: No such file or directory \(run sharebus-cert init first\)'
expect_true "issue without a root left files" test -z "$(ls -A "$tmp/empty")"
expect_status 1 "$sbc" issue --dir "$tmp/missing" --agency nhis --name N
expect_true "issue created a directory" test ! -e "$tmp/missing"

# A root.key that does not belong to root.cert must not sign anything.
"$sbc" init --dir "$tmp/other" >/dev/null
cp -r "$ca" "$tmp/mixed"
cp "$tmp/other/root.key" "$tmp/mixed/root.key"
before=$(snapshot "$tmp/mixed")
expect_status 1 "$sbc" issue --dir "$tmp/mixed" --agency mois --name M
expect_err 'root.key: does not match'
expect_unchanged "$tmp/mixed" "$before" "by issue under a mismatched root.key"

# A root.key that group or others may read is refused, naming the fix; so
# is one that is not exactly what init wrote, naming the line.
cp -r "$ca" "$tmp/open"
chmod 640 "$tmp/open/root.key"
before=$(snapshot "$tmp/open")
expect_status 1 "$sbc" issue --dir "$tmp/open" --agency mois --name M
expect_err "root.key: mode 0640 opens a secret key to group or others: run chmod 600 .*/open/root.key$"
expect_unchanged "$tmp/open" "$before" "by issue under a root.key of mode 0640"
chmod 600 "$tmp/open/root.key"
sed -i 's/^    kind = /\tkind = /' "$tmp/open/root.key"
before=$(snapshot "$tmp/open")
expect_status 1 "$sbc" revoke --dir "$tmp/open" --agency nhis
expect_err "root.key: line 4: expected '    kind = .*not a sharebus key file$"
expect_unchanged "$tmp/open" "$before" "by revoke under a malformed root.key"

# Concurrent issues get distinct serials.
pids=()
for i in 1 2 3 4 5; do
    "$sbc" issue --dir "$ca" --agency "p$i" --name "Parallel $i" >/dev/null 2>&1 & pids+=($!)
done
for pid in "${pids[@]}"; do
    expect_true "a parallel issue failed" wait "$pid"
done
serials=$(for i in 1 2 3 4 5; do grep -E '^ +serial' "$ca/p$i.cert"; done | sort -u | wc -l)
expect_true "parallel issues shared serials ($serials distinct)" test "$serials" -eq 5

# ------------------------------------------------------------ show, list, json
expect_ok "$sbc" show "$ca/nhis.cert"
expect_out '^agency +nhis$'
expect_out '^name +National Health Insurance Service$'
expect_out '^serial +1$'
expect_out '^not_after +[0-9]{4}-[0-9]{2}-[0-9]{2}T'
expect_out '^curve_public_key +.{40}$'
expect_out '^sign_public_key +.{40}$'
expect_out '^box_public_key +.{40}$'
expect_no_out '^state'
expect_ok "$sbc" show "$ca/nhis.cert" --dir "$ca"
expect_out '^state +valid$'
printf 'not a certificate\n' >"$tmp/garbage.cert"
expect_status 1 "$sbc" show "$tmp/garbage.cert"
expect_err 'not a sharebus certificate'
expect_status 1 "$sbc" show "$tmp/nowhere.cert"
expect_err 'No such file or directory'

expect_ok "$sbc" list --dir "$ca"
expect_out '^AGENCY +SERIAL +KIND +STATE'
expect_out '^nhis +1 +agency +valid '
expect_out '^broker +[0-9]+ +broker +valid '
expect_no_out 'invalid|revoked'

expect_ok "$sbc" list --dir "$ca" --json
expect_true "list --json is not JSON" json_ok
expect_out '"agency":"nhis"'
expect_out '"state":"valid"'
expect_ok "$sbc" show "$ca/nhis.cert" --json
expect_true "show --json is not JSON" json_ok
expect_out '"serial":1[,}]'
expect_ok "$sbc" verify "$ca/nhis.cert" --dir "$ca" --json
expect_true "verify --json is not JSON" json_ok
expect_out '"state":"valid"'

# ------------------------------------------------------------ tampering
expect_ok "$sbc" issue --dir "$ca" --agency mois --name "Ministry of the Interior"
cp "$ca/mois.cert" "$tmp/mois.cert.orig"
sed -i 's/Ministry of the Interior/Ministry of Mischief/' "$ca/mois.cert"
expect_true "sed did not tamper" grep -q 'Ministry of Mischief' "$ca/mois.cert"
expect_status 1 "$sbc" verify "$ca/mois.cert" --dir "$ca"
expect_err 'mois.cert: signature does not verify under this root'
expect_no_out 'valid'
expect_status 1 "$sbc" list --dir "$ca"
expect_err 'warning: .*mois.cert left out: signature does not verify'
expect_out '^mois +[0-9]+ +agency +invalid '
expect_out '^nhis +1 +agency +valid '
expect_status 1 "$sbc" list --dir "$ca" --json
expect_true "list --json with an invalid file is not JSON" json_ok
expect_out '"state":"invalid"'
cp "$tmp/mois.cert.orig" "$ca/mois.cert"
expect_ok "$sbc" verify "$ca/mois.cert" --dir "$ca"

# A certificate from another root verifies only under that root.
expect_ok "$sbc" issue --dir "$tmp/other" --agency nhis --name "National Health Insurance Service"
expect_ok "$sbc" verify "$tmp/other/nhis.cert" --dir "$tmp/other"
expect_status 1 "$sbc" verify "$tmp/other/nhis.cert" --dir "$ca"
expect_err 'another root'
cp "$tmp/other/nhis.cert" "$ca/stranger.cert"
expect_status 1 "$sbc" list --dir "$ca"
expect_err 'stranger.cert left out'
rm "$ca/stranger.cert"

# ------------------------------------------------------------ revocation
expect_status 2 "$sbc" revoke --dir "$ca" --agency NHIS
expect_err 'invalid agency id'
expect_status 1 "$sbc" revoke --dir "$ca" --agency nosuch
expect_err 'no certificate of this agency'
expect_true "a refused revoke wrote a list" test ! -e "$ca/revoked.crl"
expect_ok "$sbc" revoke --dir "$ca" --agency koroad
expect_true "revoked.crl missing" test -f "$ca/revoked.crl"
expect_ok "$sbc" list --dir "$ca"
expect_out '^koroad +2 +agency +revoked '
expect_out '^nhis +1 +agency +valid '
expect_status 1 "$sbc" verify "$ca/koroad.cert" --dir "$ca"
expect_err 'koroad.cert: certificate revoked'
expect_status 1 "$sbc" revoke --dir "$ca" --agency koroad
expect_err 'already revoked'

# A forged revocation list stops every command that trusts the directory.
cp "$ca/revoked.crl" "$tmp/crl.orig"
sed -i 's/agency = "koroad"/agency = "nhis"/' "$ca/revoked.crl"
expect_true "sed did not forge the list" grep -q 'agency = "nhis"' "$ca/revoked.crl"
expect_status 1 "$sbc" list --dir "$ca"
expect_err 'revoked.crl: revocation list not signed by the root'
expect_status 1 "$sbc" verify "$ca/nhis.cert" --dir "$ca"
cp "$tmp/crl.orig" "$ca/revoked.crl"

# ------------------------------------------------------------ rotation
old_cert=$(sum "$ca/nhis.cert")
old_key=$(sum "$ca/nhis.key")
expect_ok "$sbc" issue --dir "$ca" --agency nhis --name "National Health Insurance Service" --replace
new_serial=$(sed -nE 's/.*serial ([0-9]+).*/\1/p' "$out")
expect_true "no new serial in: $(cat "$out")" test -n "$new_serial"
expect_true "old cert not kept as nhis.1.cert" test "$(sum "$ca/nhis.1.cert")" = "$old_cert"
expect_true "old key not kept as nhis.1.key" test "$(sum "$ca/nhis.1.key")" = "$old_key"
expect_true "kept key mode" test "$(mode "$ca/nhis.1.key")" = 600
expect_true "nhis.cert not replaced" test "$(sum "$ca/nhis.cert")" != "$old_cert"
expect_ok "$sbc" list --dir "$ca"
expect_out '^nhis +1 +agency +valid '
expect_out "^nhis +$new_serial +agency +valid "
expect_ok "$sbc" verify "$ca/nhis.1.cert" --dir "$ca"
expect_ok "$sbc" revoke --dir "$ca" --agency nhis --serial 1
expect_out 'revoked nhis serial 1'
expect_ok "$sbc" list --dir "$ca"
expect_out '^nhis +1 +agency +revoked '
expect_out "^nhis +$new_serial +agency +valid "
expect_status 1 "$sbc" verify "$ca/nhis.1.cert" --dir "$ca"
expect_err 'revoked'
expect_ok "$sbc" verify "$ca/nhis.cert" --dir "$ca"
expect_status 1 "$sbc" revoke --dir "$ca" --agency nhis --serial 1
expect_err 'already revoked'
expect_status 1 "$sbc" revoke --dir "$ca" --agency mois --serial "$new_serial"
expect_err 'no such certificate'

# The CA may delete an agency's key once handed over: rotation still works.
mois_old=$(sed -nE 's/^ +serial = "([0-9]+)"/\1/p' "$ca/mois.cert")
mois_cert=$(sum "$ca/mois.cert")
rm "$ca/mois.key"
expect_ok "$sbc" issue --dir "$ca" --agency mois --name "Ministry of the Interior" --replace
expect_true "rotation without a key lost the old certificate" \
    test "$(sum "$ca/mois.$mois_old.cert")" = "$mois_cert"
expect_true "rotation without a key invented one" test ! -e "$ca/mois.$mois_old.key"
expect_true "rotation without a key wrote no new key" test -f "$ca/mois.key"
expect_ok "$sbc" revoke --dir "$ca" --agency mois --serial "$mois_old"
expect_ok "$sbc" verify "$ca/mois.cert" --dir "$ca"

# The broker's certificate can be revoked and re-issued.
expect_ok "$sbc" revoke --dir "$ca" --broker
expect_status 1 "$sbc" verify "$ca/broker.cert" --dir "$ca"
expect_err 'revoked'
expect_ok "$sbc" issue --dir "$ca" --broker --replace
expect_ok "$sbc" verify "$ca/broker.cert" --dir "$ca"

# A rotation that cannot complete puts everything back.
mois_serial=$(sed -nE 's/^ +serial = "([0-9]+)"/\1/p' "$ca/mois.cert")
touch "$ca/mois.$mois_serial.cert"
mois_cert=$(sum "$ca/mois.cert")
mois_key=$(sum "$ca/mois.key")
expect_status 1 "$sbc" issue --dir "$ca" --agency mois --name "Ministry of the Interior" --replace
expect_err "mois.$mois_serial.cert: already exists"
expect_true "failed rotation lost mois.cert" test "$(sum "$ca/mois.cert")" = "$mois_cert"
expect_true "failed rotation lost mois.key" test "$(sum "$ca/mois.key")" = "$mois_key"
expect_true "failed rotation left a key behind" test ! -e "$ca/mois.$mois_serial.key"
rm "$ca/mois.$mois_serial.cert"
# ... also when the certificate was already moved aside and the key is not.
touch "$ca/mois.$mois_serial.key"
expect_status 1 "$sbc" issue --dir "$ca" --agency mois --name "Ministry of the Interior" --replace
expect_err "mois.$mois_serial.key: already exists"
expect_true "failed rotation lost mois.cert" test "$(sum "$ca/mois.cert")" = "$mois_cert"
expect_true "failed rotation lost mois.key" test "$(sum "$ca/mois.key")" = "$mois_key"
expect_true "failed rotation left mois.$mois_serial.cert" test ! -e "$ca/mois.$mois_serial.cert"
rm "$ca/mois.$mois_serial.key"
expect_ok "$sbc" verify "$ca/mois.cert" --dir "$ca"

# ------------------------------------------------------------ leftovers
expect_true "temporary files left behind: $(ls "$ca" | grep tmp || true)" \
    eval '! ls -A "$ca" | grep -q tmp'

echo "test-cli: $passed checks passed, $failed failed"
[ "$failed" -eq 0 ]
