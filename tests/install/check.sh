#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# tests/install/check.sh MODE SRC BUILD CC
#   prefix  `cmake --install BUILD --prefix TMP`, then check what landed: the
#           shared codec's SONAME and exports (lkv_* only), the man pages
#           (every latticekvd flag is in latticekvd(8)), the systemd unit;
#           build consumer.c through pkg-config and through find_package,
#           run each (a codec round trip), and against the installed
#           latticekvd (Put, then Get of the stored bytes, with the installed
#           client library); the --version of both binaries must equal the
#           library's lkv_version_string().
#   deb     `cpack -G DEB` of BUILD; dpkg-deb -I/-c of the three packages
#           (names, Debian dependencies, contents); then `dpkg -x` of all
#           three into a temporary root (never into the system) and a
#           consumer built there through pkg-config.
# Everything lives in one temporary directory, removed on exit; the daemon
# started here is stopped with SIGTERM (and waited for) on any exit.
set -eu
mode=$1 src=$2 build=$3 cc=$4
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lkv-install.XXXXXX")
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
die() { echo "install check ($mode): $*" >&2; exit 1; }

# pkgconfig_consumer PKGCONFIG_DIR LIBDIR OUT: consumer.c through pkg-config, with an
# rpath to LIBDIR (the test does not touch the loader's search path).
pkgconfig_consumer() {
  flags=$(PKG_CONFIG_PATH=$1 PKG_CONFIG_LIBDIR=$1 pkg-config --cflags --libs latticekv latticekv-client) ||
    die "pkg-config latticekv latticekv-client failed"
  # shellcheck disable=SC2086 # the flags are words
  "$cc" -O1 -Wall -Werror -DLKV_CONSUMER_CLIENT -o "$3" "$src/tests/install/consumer/consumer.c" \
    $flags -lm -Wl,-rpath,"$2" || die "consumer through pkg-config does not build ($flags)"
}

# check_versions CONSUMER CLI DAEMON: both --version outputs name the version
# the consumer prints (lkv_version_string); leaves it in $want.
check_versions() {
  want=$("$1" | sed -n 's/^version //p')
  [ -n "$want" ] || die "$1 printed no version"
  got=$("$2" --version) && [ "$got" = "latticekv $want" ] ||
    die "latticekv --version says '$got', the library $want"
  got=$("$3" --version) && [ "$got" = "latticekvd $want" ] ||
    die "latticekvd --version says '$got', the library $want"
  echo "ok: versions agree ($want)"
}

case $mode in
prefix)
  p=$tmp/prefix
  cmake --install "$build" --prefix "$p" >"$tmp/install.log" || { cat "$tmp/install.log"; die "cmake --install failed"; }
  libdir=$(ls -d "$p"/lib*/pkgconfig | head -n 1) && libdir=${libdir%/pkgconfig}
  for f in include/lkv_codec.h include/lkv_format.h include/lkv_client.h bin/latticekv sbin/latticekvd \
           share/man/man1/latticekv.1 share/man/man8/latticekvd.8 lib/systemd/system/latticekvd.service; do
    [ -e "$p/$f" ] || die "not installed: $f"
  done
  for f in liblatticekv.a liblatticekv.so liblatticekv.so.0 liblatticekv-client.so liblatticekv-client.so.0 \
           pkgconfig/latticekv.pc pkgconfig/latticekv-client.pc cmake/latticekv/latticekvConfig.cmake; do
    [ -e "$libdir/$f" ] || die "not installed: $libdir/$f"
  done
  # The shared libraries: a SONAME, and nothing exported outside lkv_* (the
  # version node's own name aside).
  for lib in liblatticekv liblatticekv-client; do
    readelf -d "$libdir/$lib.so" | grep -q "SONAME.*\[$lib\.so\.0\]" || die "$lib.so: SONAME is not $lib.so.0"
    extra=$(nm -D --defined-only "$libdir/$lib.so" | awk '$2 != "A" && $3 !~ /^lkv_/ {print $3}')
    [ -z "$extra" ] || die "$lib.so exports symbols outside lkv_*: $extra"
  done
  nm -D --defined-only "$libdir/liblatticekv.so" | grep -q ' T lkv_version_string' ||
    die "liblatticekv.so does not export lkv_version_string"
  nm -D --defined-only "$libdir/liblatticekv-client.so" | grep -q ' T lkv_client_put' ||
    die "liblatticekv-client.so does not export lkv_client_put"
  echo "ok: files, SONAMEs, exports"

  # Man pages: every flag of `latticekvd --help` is in latticekvd(8), every
  # command of `latticekv --help` has a section in latticekv(1).
  for flag in $("$p/sbin/latticekvd" --help | sed -n 's/^  --\([a-z0-9-]*\).*/\1/p'); do
    esc=$(printf '%s' "$flag" | sed 's/-/\\\\-/g')
    grep -q "^\\\\fB\\\\-\\\\-$esc\\\\fR" "$p/share/man/man8/latticekvd.8" || die "latticekvd.8 lacks --$flag"
  done
  for cmd in $("$p/bin/latticekv" --help | sed -n 's/^  \([a-z][a-z]*\) .*/\1/p'); do
    grep -q "^\\.SS \\\\fB$cmd\\\\fR" "$p/share/man/man1/latticekv.1" || die "latticekv.1 lacks $cmd"
  done
  if command -v groff >/dev/null; then
    w=$(groff -man -Tutf8 -ww -z "$p/share/man/man1/latticekv.1" "$p/share/man/man8/latticekvd.8" 2>&1)
    [ -z "$w" ] || die "groff warns about the man pages: $w"
  fi
  grep -qx "ExecStart=$p/sbin/latticekvd" "$p/lib/systemd/system/latticekvd.service" ||
    die "latticekvd.service does not start $p/sbin/latticekvd"
  if command -v systemd-analyze >/dev/null; then
    # verify also opens Documentation=man:latticekvd(8): the installed page.
    MANPATH=$p/share/man systemd-analyze verify "$p/lib/systemd/system/latticekvd.service" ||
      die "systemd-analyze verify rejects latticekvd.service"
  fi
  echo "ok: man pages, systemd unit"

  pkgconfig_consumer "$libdir/pkgconfig" "$libdir" "$tmp/consumer_pc"
  "$tmp/consumer_pc" || die "consumer through pkg-config failed"
  cmake -S "$src/tests/install/consumer" -B "$tmp/cbuild" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_PREFIX_PATH="$p" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="-Wall -Werror" \
    >"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log"; die "find_package(latticekv) consumer does not configure"; }
  cmake --build "$tmp/cbuild" >"$tmp/cbuild.log" 2>&1 || { cat "$tmp/cbuild.log"; die "find_package consumer does not build"; }
  "$tmp/cbuild/consumer_shared" || die "find_package consumer (latticekv::codec) failed"
  "$tmp/cbuild/consumer_static" || die "find_package consumer (latticekv::codec_static) failed"
  ldd "$tmp/cbuild/consumer_static" | grep -q liblatticekv && die "consumer_static links liblatticekv.so"
  ldd "$tmp/cbuild/consumer_shared" | grep -q "liblatticekv.so.0 => $libdir/" ||
    die "consumer_shared does not load the installed liblatticekv.so.0"
  echo "ok: consumers through pkg-config and find_package"
  check_versions "$tmp/consumer_pc" "$p/bin/latticekv" "$p/sbin/latticekvd"
  # The Python package that `cmake --install` puts beside them, stubs included.
  if [ -d "$p/lib/python3/dist-packages/latticekv" ]; then
    pyv=$(cd "$tmp" && PYTHONPATH=$p/lib/python3/dist-packages /usr/bin/python3 -c \
      'import latticekv; assert latticekv._GEN.startswith(latticekv.__path__[0]); print(latticekv.__version__)') ||
      die "the installed Python package does not import"
    [ "$pyv" = "$want" ] || die "the Python package says $pyv, the library $want"
    echo "ok: the installed Python package ($pyv)"
  fi

  # The installed daemon and client library, end to end.
  sock=$tmp/d.sock
  "$p/sbin/latticekvd" --listen "unix:$sock" --backend cpu --threads 1 --host-mem-bytes 64MiB \
    --log-level warn 2>"$tmp/daemon.log" &
  daemon_pid=$!
  "$tmp/consumer_pc" "unix:$sock" || { cat "$tmp/daemon.log"; die "consumer against the installed latticekvd failed"; }
  "$tmp/cbuild/consumer_shared" "unix:$sock" || die "find_package consumer against latticekvd failed"
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || die "latticekvd exited $? after SIGTERM"
  daemon_pid=
  echo "ok: installed client library against the installed latticekvd"
  ;;

deb)
  out=$tmp/debs
  (cd "$build" && cpack -G DEB -B "$out" >"$tmp/cpack.log" 2>&1) || { cat "$tmp/cpack.log"; die "cpack -G DEB failed"; }
  version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
  for pkg in liblatticekv0 liblatticekv-dev latticekvd; do
    deb=$(ls "$out"/${pkg}_"$version"_*.deb 2>/dev/null) || die "no $pkg .deb in $(ls "$out")"
    dpkg-deb -I "$deb" >"$tmp/$pkg.info"
    dpkg-deb -c "$deb" >"$tmp/$pkg.files"
    grep -q "^ Package: $pkg\$" "$tmp/$pkg.info" || die "$deb: Package is not $pkg"
  done
  # Dependencies are Debian 12 package names, found by dpkg-shlibdeps.
  grep -Eq '^ Depends:.*libgrpc29' "$tmp/liblatticekv0.info" || die "liblatticekv0 does not depend on libgrpc29: $(grep Depends "$tmp/liblatticekv0.info")"
  grep -Eq '^ Depends:.*libc6' "$tmp/liblatticekv0.info" || die "liblatticekv0 does not depend on libc6"
  grep -Eq '^ Depends:.*libuv1' "$tmp/latticekvd.info" || die "latticekvd does not depend on libuv1"
  grep -Eq '^ Depends:.*libprotobuf-c1' "$tmp/latticekvd.info" || die "latticekvd does not depend on libprotobuf-c1"
  grep -Eq ' shlibs *$' "$tmp/liblatticekv0.info" || die "liblatticekv0 has no shlibs file"
  grep -Eq "^ Depends:.*liblatticekv0 \(= $version\)" "$tmp/liblatticekv-dev.info" || die "liblatticekv-dev does not depend on liblatticekv0 (= $version)"
  for f in ./usr/lib/liblatticekv.so.0 ./usr/lib/liblatticekv-client.so.0; do
    grep -q " $f" "$tmp/liblatticekv0.files" || die "liblatticekv0 lacks $f"
  done
  for f in ./usr/include/lkv_codec.h ./usr/include/lkv_client.h ./usr/lib/liblatticekv.a \
           ./usr/lib/pkgconfig/latticekv.pc ./usr/lib/cmake/latticekv/latticekvConfig.cmake; do
    grep -q " $f" "$tmp/liblatticekv-dev.files" || die "liblatticekv-dev lacks $f"
  done
  for f in ./usr/sbin/latticekvd ./usr/bin/latticekv ./usr/share/man/man8/latticekvd.8 \
           ./usr/lib/systemd/system/latticekvd.service; do
    grep -q " $f" "$tmp/latticekvd.files" || die "latticekvd lacks $f"
  done
  echo "ok: dpkg-deb -I/-c of liblatticekv0, liblatticekv-dev, latticekvd $version"

  root=$tmp/root
  for deb in "$out"/*.deb; do dpkg-deb -x "$deb" "$root"; done
  pkgconfig_consumer "$root/usr/lib/pkgconfig" "$root/usr/lib" "$tmp/consumer_deb"
  "$tmp/consumer_deb" || die "consumer built against the unpacked packages failed"
  ldd "$tmp/consumer_deb" | grep -q "liblatticekv.so.0 => $root/usr/lib/" ||
    die "consumer does not load the packaged liblatticekv.so.0"
  grep -qx "ExecStart=/usr/sbin/latticekvd" "$root/usr/lib/systemd/system/latticekvd.service" ||
    die "packaged latticekvd.service does not start /usr/sbin/latticekvd"
  check_versions "$tmp/consumer_deb" "$root/usr/bin/latticekv" "$root/usr/sbin/latticekvd"
  echo "ok: consumer built and run against the unpacked packages"
  ;;
*) die "unknown mode" ;;
esac
