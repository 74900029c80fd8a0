#!/usr/bin/env bash
# `meson install` into a DESTDIR puts in place what a package would: every
# daemon and tool (each runs, each has a man page), libsharebus with its
# soname exporting sb_* only, sharebus.h, sharebus.pc that a client
# compiles and links with, the systemd units (which systemd-analyze
# accepts and rates well hardened), the sysusers entry and example
# configuration files that the daemons accept.
# (docs/examples/test-examples.sh runs the client examples on a live bus.)
source "$(dirname "$0")/lib.sh"
DEST=$WORK/dest
meson install -C "$BUILD" --destdir "$DEST" --no-rebuild --quiet >"$WORK/install.log" 2>&1 \
  || { cat "$WORK/install.log"; fail "meson install --destdir"; }
option() {
  meson introspect "$BUILD" --buildoptions \
    | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]))' "$1"
}
PREFIX=$DEST$(option prefix)
BIN=$PREFIX/$(option bindir)
LIB=$PREFIX/$(option libdir)
pass "installed under $PREFIX"

for exe in sharebus-broker sharebus-agent sharebus sharebus-cert sharebus-policy sharebus-audit; do
  [ -x "$BIN/$exe" ] || fail "$exe not installed in $BIN"
  out=$(LD_LIBRARY_PATH=$LIB "$BIN/$exe" --version) || fail "$exe --version: $out"
  [ "$out" = "$exe 0.1.0" ] || fail "$exe --version says: $out"
  ls "$PREFIX"/share/man/man[18]/"$exe".[18] >/dev/null 2>&1 || fail "no man page for $exe"
done
pass "six executables, each with a man page"

[ "$(readlink "$LIB/libsharebus.so")" = libsharebus.so.0 ] || fail "libsharebus.so link"
[ "$(readlink "$LIB/libsharebus.so.0")" = libsharebus.so.0.1.0 ] || fail "libsharebus.so.0 link"
readelf -d "$LIB/libsharebus.so.0.1.0" | grep -q 'SONAME.*\[libsharebus\.so\.0\]' || fail "soname"
others=$(nm -D --defined-only "$LIB/libsharebus.so.0.1.0" | awk '$2 ~ /^[TDBR]$/ && $3 !~ /^sb_/ {print $3}')
[ -z "$others" ] || fail "libsharebus exports more than sb_*: $others"
[ -f "$PREFIX/include/sharebus.h" ] || fail "sharebus.h"
pass "libsharebus.so.0.1.0 (soname libsharebus.so.0) exports sb_* only; sharebus.h"

pc=$(find "$DEST" -name sharebus.pc | head -1)
[ -n "$pc" ] || fail "no sharebus.pc"
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$DEST
[ "$(pkg-config --modversion sharebus)" = 0.1.0 ] || fail "pkg-config --modversion sharebus"
flags=$(pkg-config --cflags --libs sharebus)
san=$(option b_sanitize)
sanflags=()
[ "$san" = none ] || sanflags=(-fsanitize="$san")
cat >"$WORK/client.c" <<'EOF'
#include <stdio.h>
#include <sharebus.h>
int main(void)
{
    sb_client_t *client = sb_client_new("ipc:///nonexistent/agent.sock");
    printf("%s\n", sb_errname(SB_ENOCONSENT));
    sb_client_destroy(&client);
    return 0;
}
EOF
sources=("$WORK/client.c")
[ -f "$SRC/docs/examples/renewal.c" ] && sources+=("$SRC/docs/examples/renewal.c")
for source in "${sources[@]}"; do
  name=$(basename "$source" .c)
  # shellcheck disable=SC2086
  "${CC:-cc}" -std=c11 -Wall -Wextra -Werror "${sanflags[@]}" "$source" $flags -o "$WORK/$name" \
    2>"$WORK/$name-cc.log" || { cat "$WORK/$name-cc.log"; fail "$name.c against the installed sharebus.pc"; }
done
out=$(LD_LIBRARY_PATH=$LIB "$WORK/client")
[ "$out" = no-consent ] || fail "client linked to the installed library printed: $out"
pass "a client builds with pkg-config sharebus and runs on the installed library (${sources[*]##*/})"

UNITS=$(find "$DEST" -path '*/systemd/system/*' -name 'sharebus-*.service')
for unit in sharebus-broker.service sharebus-agent@.service; do
  file=$(grep -F "/$unit" <<<"$UNITS") || fail "unit $unit not installed"
  grep -q "^ExecStart=$(option prefix)/$(option bindir)/sharebus-" "$file" || fail "$unit: ExecStart"
  for setting in 'ProtectSystem=strict' 'NoNewPrivileges=yes' 'PrivateTmp=yes' 'ProtectHome=yes' \
      'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' 'MemoryDenyWriteExecute=yes' \
      'LockPersonality=yes' 'SystemCallFilter=@system-service' 'UMask=0077' 'User=sharebus' \
      'ExecReload=/bin/kill -HUP $MAINPID' 'ReadWritePaths=/var/lib/sharebus/'; do
    grep -qF "$setting" "$file" || fail "$unit lacks $setting"
  done
done
[ -f "$PREFIX/lib/sysusers.d/sharebus.conf" ] || fail "sysusers entry"
if command -v systemd-analyze >/dev/null; then
  # Point ExecStart at the DESTDIR so that the checks find the programs.
  mkdir "$WORK/units"
  for file in $UNITS; do
    sed "s|$(option prefix)/$(option bindir)|$BIN|" "$file" >"$WORK/units/$(basename "$file")"
  done
  cp "$WORK/units/sharebus-agent@.service" "$WORK/units/sharebus-agent@koroad.service"
  systemd-analyze verify --man=no "$WORK/units/sharebus-broker.service" \
    "$WORK/units/sharebus-agent@koroad.service" >"$WORK/verify.log" 2>&1 \
    || { cat "$WORK/verify.log"; fail "systemd-analyze verify"; }
  for unit in sharebus-broker.service sharebus-agent@koroad.service; do
    level=$(systemd-analyze security --offline=yes "$WORK/units/$unit" 2>/dev/null \
      | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
    [ -n "$level" ] || continue
    python3 -c "import sys; sys.exit(0 if float('$level') <= 2.5 else 1)" \
      || fail "$unit: exposure $level (more than 2.5)"
    echo "  $unit: exposure $level"
  done
fi
pass "systemd units: broker and agent@ID, hardened; sysusers entry"

# The example configuration files are accepted (paths aside).
EX=$PREFIX/share/doc/sharebus/examples
sed -e "s|/etc/sharebus/certs|$WORK/nowhere|" -e "s|/var/lib/sharebus/broker|$WORK/b|" \
  "$EX/broker.conf.example" >"$WORK/broker.conf"
out=$("$BIN/sharebus-broker" --config "$WORK/broker.conf" 2>&1) && fail "broker without certificates ran"
grep -q "root.cert" <<<"$out" || fail "broker.conf.example: $out"
sed -e "s|ID|koroad|g" -e "s|/etc/sharebus/certs|$WORK/nowhere|" \
  -e "s|/var/lib/sharebus/|$WORK/|" -e "s|/run/sharebus/koroad/|$WORK/|" \
  "$EX/agent.conf.example" >"$WORK/agent.conf"
out=$("$BIN/sharebus-agent" --agency koroad --config "$WORK/agent.conf" 2>&1) && fail "agent ran"
grep -q "root.cert" <<<"$out" || fail "agent.conf.example: $out"
pass "the example configuration files parse (the daemons stop only for want of certificates)"
