#!/usr/bin/env bash
# The client guide's examples, built the way a back-end developer builds
# them: install sharebus into a temporary DESTDIR, compile renewal.c and
# provider.c against the installed sharebus.h and sharebus.pc only, then
# run them on a live bus (broker and agents from the build tree): the
# provider serves nhis's checkups, the renewal office records consent and
# gets exactly the fields it asked for.
#
#   BUILD   the meson build directory (set by meson test)
#   CC      the compiler (default cc)
#   KEEP=1  keep the work directory
# shellcheck source=../../tests/integration/lib.sh
source "$(dirname "$0")/../../tests/integration/lib.sh"
EXAMPLES=$SRC/docs/examples
DEST=$WORK/dest

# 1. Install, as a packager would, into a DESTDIR.
meson install -C "$BUILD" --destdir "$DEST" --no-rebuild --quiet >"$WORK/install.log" 2>&1 \
  || { cat "$WORK/install.log"; fail "meson install into $DEST"; }
pc=$(find "$DEST" -name sharebus.pc | head -1)
[ -n "$pc" ] || fail "no sharebus.pc installed"
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR=$DEST
flags=$(pkg-config --cflags --libs sharebus) || fail "pkg-config sharebus"
if ! grep -q -- "-I$DEST/" <<<"$flags" || ! grep -q -- "-L$DEST/" <<<"$flags"; then
  fail "pkg-config flags do not point into the DESTDIR: $flags"
fi
libdir=$(pkg-config --variable=libdir sharebus)
pass "installed; pkg-config sharebus: $flags"

# 2. Compile each example on its own, as the guide says. A sanitized build
# installs a sanitized library: the program must use the same runtime.
san=$(meson introspect "$BUILD" --buildoptions \
  | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize"))')
sanflags=()
[ "$san" = none ] || sanflags=(-fsanitize="$san")
for example in renewal provider; do
  # shellcheck disable=SC2086
  "${CC:-cc}" -std=c11 -Wall -Wextra -Wpedantic -Werror "${sanflags[@]}" \
    "$EXAMPLES/$example.c" $flags -o "$WORK/$example" 2>"$WORK/$example-cc.log" \
    || { cat "$WORK/$example-cc.log"; fail "$example.c does not compile against the installed library"; }
  pass "$example.c compiles against the installed library"
done
run() { LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$@"; }

# 3. A live bus: the provider example is nhis's back-end.
setup_certs nhis koroad
setup_policy
start_broker
start_agent nhis
start_agent koroad
LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
  "$WORK/provider" "$(agent_ep nhis)" >"$WORK/provider.log" 2>&1 &
PROVIDER=$!
PIDS+=("$PROVIDER")
wait_for 10 grep -q "^serving health.checkup.vision-hearing" "$WORK/provider.log"
pass "provider serves the checkup dataset"

out=$(run "$WORK/renewal" "$(agent_ep koroad)" "$SUBJECT" 2>&1) || fail "renewal: $out"
grep -Eq '^consent [0-9a-f]{32} recorded' <<<"$out" || fail "no consent recorded: $out"
grep -Eq '^  vision_left +1\.0$' <<<"$out" || fail "vision_left: $out"
grep -Eq '^  hearing_right +normal$' <<<"$out" || fail "hearing_right: $out"
grep -q blood_pressure <<<"$out" && fail "blood_pressure flowed: $out"
grep -q "request from koroad for driver-licence-renewal under rule licence-renewal-uses-checkup: answered" \
  "$WORK/provider.log" || fail "provider did not log the request: $(cat "$WORK/provider.log")"
grep -q "$SUBJECT" "$WORK/provider.log" && fail "the provider example logged a national id"
pass "renewal records consent and prints the five checkup fields"

out=$(run "$WORK/renewal" "$(agent_ep koroad)" 111111-1111111 2>&1) \
  && fail "renewal for a person without a checkup succeeded: $out"
grep -q "no checkup on record (not-found:" <<<"$out" || fail "unknown person: $out"
pass "renewal for a person nhis has no checkup of: not-found"

out=$(run "$WORK/renewal" "$(agent_ep koroad)" 2>&1) && fail "renewal without arguments: $out"
grep -q "^usage: renewal" <<<"$out" || fail "usage: $out"

kill "$PROVIDER"
wait "$PROVIDER" || fail "provider exited with status $? on SIGTERM"
pass "provider stops with status 0 on SIGTERM"
stop_broker
