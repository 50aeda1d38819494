#!/bin/sh
# test_package.sh -- the Debian package (SPEC section 12, docs/operations.md
# section 1).
#
#   test_package.sh BUILD_DIR [CPACK]
#
# Always (no root needed):
#   - `cpack -G DEB` in BUILD_DIR builds a package (written to a temp dir,
#     not into BUILD_DIR);
#   - its contents: /usr/bin/clvd and /usr/bin/clvctl (executable), the
#     config /etc/clvd/clvd.yaml (world-readable: DynamicUser) and its
#     pristine copy clvd.yaml.default, both units under /lib/systemd/system,
#     the documentation the units point at; nothing outside /usr, /etc/clvd
#     and /lib/systemd/system;
#   - its control data: Package clvd, the built version, this machine's
#     architecture, shared-library Depends, /etc/clvd/clvd.yaml a conffile,
#     maintainer scripts that parse;
#   - on the extracted package: `clvd --check-config` accepts the shipped
#     config, `systemd-analyze verify` accepts both units (with ExecStart
#     pointed at the extracted binary) and `systemd-analyze security
#     --offline=true` rates each at an exposure of at most 2.0.
#
# Only as root and with CLVD_TEST_DPKG=1 or CI set (otherwise the test ends
# with the skip status 77 after the checks above, saying so), on a machine
# where clvd is not installed and /etc/clvd does not exist:
#   - `dpkg -i` installs it into the real system; the installed clvd runs
#     (--version, no missing library), `clvd --check-config
#     /etc/clvd/clvd.yaml` passes, systemd-analyze verify and security
#     (exposure <= 2.0) accept /lib/systemd/system/clvd.service and
#     clvd@.service;
#   - `dpkg -r clvd` removes the binaries and units but keeps the (edited)
#     conffile; `dpkg --purge clvd` removes it and /etc/clvd: the machine
#     is left as it was (also when a check fails).
#
# systemd-analyze checks are skipped, with a note, when systemd-analyze is
# not installed (Debian package systemd) or too old for --offline.
set -u

SKIP=77
build=${1:-}
cpack=${2:-cpack}
max_exposure=2.0

say() { printf '%s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}
skip() {
    printf 'SKIP: %s\n' "$*"
    exit $SKIP
}

[ -n "$build" ] && [ -f "$build/CPackConfig.cmake" ] ||
    fail "usage: $0 BUILD_DIR [CPACK] (BUILD_DIR: a configured clvd build tree)"
command -v dpkg-deb >/dev/null 2>&1 || skip "dpkg-deb not found: not a Debian system"
command -v "$cpack" >/dev/null 2>&1 || skip "cpack ($cpack) not found"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/clvd-pkg.XXXXXX") || fail "mktemp"
installed=0
cleanup() {
    if [ "$installed" = 1 ]; then
        say "cleanup: dpkg --purge clvd"
        dpkg --purge clvd >"$tmp/cleanup.log" 2>&1 || cat "$tmp/cleanup.log" >&2
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# ---- build the package ------------------------------------------------------------
say "building the package: (cd $build && $cpack -G DEB -B <temp dir>)"
if ! (cd "$build" && "$cpack" -G DEB -B "$tmp/pkg") >"$tmp/cpack.log" 2>&1; then
    tail -n 30 "$tmp/cpack.log" >&2
    for log in "$tmp"/pkg/_CPack_Packages/*/DEB/*.log; do
        [ -f "$log" ] || continue
        printf '==== %s (errors)\n' "$log" >&2
        grep -n -B2 -A3 -i 'error' "$log" | head -n 40 >&2
    done
    fail "cpack -G DEB failed (see above)"
fi
set -- "$tmp"/pkg/*.deb
[ $# = 1 ] && [ -f "$1" ] || fail "cpack made $# .deb files in $tmp/pkg, want 1"
deb=$1
say "package: $(basename "$deb")"

# ---- contents -----------------------------------------------------------------------
dpkg-deb -c "$deb" >"$tmp/contents" || fail "dpkg-deb -c failed"
# "perms owner size date time path": keep perms and path
awk '{ print $1, $6 }' "$tmp/contents" >"$tmp/files"

has() { # has PATH PERMS-REGEX
    grep -Eq "^$2 \\.$1\$" "$tmp/files" ||
        fail "package lacks $1 with mode $2; it has: $(grep -F ".$1" "$tmp/files" || echo nothing)"
}
has /usr/bin/clvd '-rwxr-xr-x'
has /usr/bin/clvctl '-rwxr-xr-x'
has /etc/clvd/clvd.yaml '-rw-r--r--'
has /etc/clvd/clvd.yaml.default '-rw-r--r--'
has /lib/systemd/system/clvd.service '-rw-r--r--'
has '/lib/systemd/system/clvd@\.service' '-rw-r--r--'
has /usr/share/doc/clvd/operations.md '-rw-r--r--'
stray=$(awk '{ print $2 }' "$tmp/files" |
    grep -Ev '^\./(usr/|etc/$|etc/clvd/|lib/$|lib/systemd/$|lib/systemd/system/)' || true)
[ -z "$stray" ] || fail "files outside /usr, /etc/clvd and /lib/systemd/system: $stray"
grep -Eq ' \./usr/local/' "$tmp/files" && fail "files under /usr/local"
say "contents: binaries, config, units and docs in place"

# ---- control data -------------------------------------------------------------------
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = clvd ] || fail "Package: $(field Package), want clvd"
version=$(field Version)
built=$("$build/clvd" --version 2>/dev/null | awk '{ print $2 }')
[ -n "$version" ] && [ "$version" = "$built" ] ||
    fail "Version: $version, but the built clvd says ${built:-nothing}"
if command -v dpkg >/dev/null 2>&1; then
    arch=$(dpkg --print-architecture)
    [ "$(field Architecture)" = "$arch" ] ||
        fail "Architecture: $(field Architecture), want $arch"
fi
depends=$(field Depends)
for lib in librdkafka libhiredis libyaml libmicrohttpd libsystemd; do
    case "$depends" in
    *"$lib"*) ;;
    *) fail "Depends lacks $lib: $depends" ;;
    esac
done
dpkg-deb -I "$deb" conffiles >"$tmp/conffiles" 2>/dev/null || fail "the package has no conffiles"
grep -qx '/etc/clvd/clvd.yaml' "$tmp/conffiles" ||
    fail "/etc/clvd/clvd.yaml is not a conffile; conffiles: $(cat "$tmp/conffiles")"
mkdir "$tmp/control"
dpkg-deb -e "$deb" "$tmp/control" || fail "dpkg-deb -e failed"
for script in postinst prerm postrm; do
    [ -x "$tmp/control/$script" ] || fail "maintainer script $script missing or not executable"
    sh -n "$tmp/control/$script" || fail "maintainer script $script does not parse"
done
say "control: clvd $version $(field Architecture); conffiles: $(tr '\n' ' ' <"$tmp/conffiles")"

# ---- the extracted package ----------------------------------------------------------
root="$tmp/root"
mkdir "$root"
dpkg-deb -x "$deb" "$root" || fail "dpkg-deb -x failed"
"$root/usr/bin/clvd" --check-config "$root/etc/clvd/clvd.yaml" >"$tmp/check.log" 2>&1 ||
    fail "clvd --check-config rejects the shipped config: $(tail -n 5 "$tmp/check.log")"
cmp -s "$root/etc/clvd/clvd.yaml" "$root/etc/clvd/clvd.yaml.default" ||
    fail "clvd.yaml and clvd.yaml.default differ in the package"
say "extracted: clvd --check-config accepts the shipped config"

analyze=
if command -v systemd-analyze >/dev/null 2>&1; then
    if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
        analyze=systemd-analyze
    else
        say "note: systemd-analyze has no --offline (systemd < 252): unit checks skipped"
    fi
else
    say "note: systemd-analyze not installed (apt-get install systemd): unit checks skipped"
fi

# exposure UNIT-PATH: systemd-analyze security --offline=true, at most 2.0
exposure() {
    out=$(systemd-analyze security --offline=true "$1" 2>&1) ||
        fail "systemd-analyze security --offline=true $1 failed:
$out"
    line=$(printf '%s\n' "$out" | grep 'Overall exposure level') ||
        fail "no 'Overall exposure level' from systemd-analyze security $1:
$out"
    level=$(printf '%s\n' "$line" | sed -n 's/.*: *\([0-9][0-9.]*\) .*/\1/p')
    [ -n "$level" ] || fail "cannot read the exposure in: $line"
    awk -v l="$level" -v m="$max_exposure" 'BEGIN { exit !(l + 0 <= m + 0) }' ||
        fail "$(basename "$1"): exposure $level, want at most $max_exposure ($line)"
    say "$(basename "$1"): exposure $level (at most $max_exposure)"
}

# verify UNIT-PATH...: systemd-analyze verify, nothing printed
verify() {
    out=$(systemd-analyze verify "$@" 2>&1)
    rc=$?
    [ $rc = 0 ] && [ -z "$out" ] || fail "systemd-analyze verify $* (exit $rc):
$out"
    say "systemd-analyze verify: $(for u in "$@"; do basename "$u"; done | tr '\n' ' ')OK"
}

if [ -n "$analyze" ]; then
    units="$tmp/units"
    mkdir "$units"
    # verify insists that ExecStart exists: point it at the extracted binary
    for u in clvd.service clvd@.service; do
        sed "s|/usr/bin/clvd|$root/usr/bin/clvd|g" "$root/lib/systemd/system/$u" >"$units/$u"
    done
    ln -s clvd@.service "$units/clvd@test.service"
    verify "$units/clvd.service" "$units/clvd@test.service"
    exposure "$root/lib/systemd/system/clvd.service"
    exposure "$root/lib/systemd/system/clvd@.service"
fi

# ---- installing it into the system ------------------------------------------------
if [ "$(id -u)" != 0 ]; then
    skip "dpkg -i not tried: not root (package checks above passed)"
fi
if [ "${CLVD_TEST_DPKG:-}" != 1 ] && [ -z "${CI:-}" ]; then
    skip "dpkg -i not tried: set CLVD_TEST_DPKG=1 (or CI) to install into this system (package checks above passed)"
fi
if dpkg-query -W -f='${Status}' clvd 2>/dev/null | grep -Eq 'installed|config-files'; then
    skip "clvd is already installed here ($(dpkg-query -W -f='${Version} ${Status}' clvd)): not touching it"
fi
[ -e /etc/clvd ] && skip "/etc/clvd exists (not from a package): not touching it"
for u in clvd.service clvd@.service; do
    [ -e "/lib/systemd/system/$u" ] && skip "/lib/systemd/system/$u exists: not touching it"
done
[ -e /usr/bin/clvd ] && skip "/usr/bin/clvd exists: not touching it"

say "installing: dpkg -i $(basename "$deb")"
installed=1
if ! DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1; then
    cat "$tmp/dpkg.log" >&2
    fail "dpkg -i failed (missing dependencies? see above)"
fi
dpkg-query -W -f='${Status}' clvd | grep -q 'install ok installed' ||
    fail "after dpkg -i: $(dpkg-query -W -f='${Status}' clvd)"
[ "$(/usr/bin/clvd --version | awk '{ print $2 }')" = "$version" ] ||
    fail "/usr/bin/clvd --version: $(/usr/bin/clvd --version)"
/usr/bin/clvctl --help >/dev/null 2>&1 || fail "/usr/bin/clvctl --help fails"
missing=$(ldd /usr/bin/clvd /usr/bin/clvctl 2>&1 | grep 'not found' || true)
[ -z "$missing" ] || fail "libraries not found: $missing"
/usr/bin/clvd --check-config /etc/clvd/clvd.yaml >"$tmp/check.log" 2>&1 ||
    fail "clvd --check-config /etc/clvd/clvd.yaml: $(tail -n 5 "$tmp/check.log")"
say "installed: clvd $version runs, clvd --check-config /etc/clvd/clvd.yaml passes"
if [ -n "$analyze" ]; then
    mkdir "$tmp/inst"
    ln -s /lib/systemd/system/clvd@.service "$tmp/inst/clvd@test.service"
    verify /lib/systemd/system/clvd.service "$tmp/inst/clvd@test.service"
    exposure /lib/systemd/system/clvd.service
    exposure /lib/systemd/system/clvd@.service
fi

# remove keeps the edited conffile; purge removes it
printf '# edited by test_package.sh\n' >>/etc/clvd/clvd.yaml
dpkg -r clvd >"$tmp/dpkg.log" 2>&1 || {
    cat "$tmp/dpkg.log" >&2
    fail "dpkg -r clvd failed"
}
for f in /usr/bin/clvd /usr/bin/clvctl /lib/systemd/system/clvd.service \
    /lib/systemd/system/clvd@.service /etc/clvd/clvd.yaml.default; do
    [ -e "$f" ] && fail "$f is still there after dpkg -r"
done
grep -q 'edited by test_package.sh' /etc/clvd/clvd.yaml 2>/dev/null ||
    fail "dpkg -r removed or replaced the edited conffile /etc/clvd/clvd.yaml"
dpkg-query -W -f='${Status}' clvd | grep -q 'config-files' ||
    fail "after dpkg -r: $(dpkg-query -W -f='${Status}' clvd), want config-files"
dpkg --purge clvd >"$tmp/dpkg.log" 2>&1 || {
    cat "$tmp/dpkg.log" >&2
    fail "dpkg --purge clvd failed"
}
installed=0
[ -e /etc/clvd/clvd.yaml ] && fail "/etc/clvd/clvd.yaml is still there after dpkg --purge"
[ -e /etc/clvd ] && fail "/etc/clvd is still there after dpkg --purge"
if dpkg-query -W -f='${Status}' clvd 2>/dev/null | grep -Eq 'installed|config-files'; then
    fail "after dpkg --purge: $(dpkg-query -W -f='${Status}' clvd)"
fi
say "removed (conffile kept) and purged: the system is as before"
say "PASS"
exit 0
