#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The image's build steps, shared by deploy/Dockerfile (builder stage) and CI
# on the bare machine (ctest deploy_image_steps), so what CI checks is what
# the image holds:
#
#   deploy/build-image-steps.sh VARIANT SRC BUILD STAGING [CONFIG]
#
#   VARIANT  cpu | cuda (cuda needs nvcc; the environment's LKV_CUDA_ARCHS,
#            e.g. "90", picks the GPU architectures, default the project's 80;90)
#   SRC      the source tree;  BUILD  a build directory for this variant
#   STAGING  the prefix the runtime image copies to / (emptied first)
#   CONFIG   a latticekvd config file to start the staged daemon with
#            (default deploy/k8s/overlays/cpu/latticekvd.conf)
#
# Steps: configure (RelWithDebInfo, -O2, the configuration the test suite
# builds with warnings as errors; the binaries are stripped when staged), build latticekvd and the
# latticekv CLI, stage them under STAGING/usr/local/bin, work out the Debian
# runtime packages their shared libraries come from
# (STAGING/usr/local/share/latticekv/runtime-packages.txt, which the runtime
# stage installs), then check the staged result: every library resolves,
# `latticekvd --version` and `--help` work, and the daemon starts from the
# config file (its listeners replaced by one unix socket in a temp dir; as
# uid 65532, the image's user, when run as root), reports ready and exits 0
# on SIGTERM.
set -eu
[ $# -ge 4 ] || { sed -n '2,/^set -eu/p' "$0" | grep '^#' >&2; exit 2; }
variant=$1 src=$(cd "$2" && pwd) build=$3 staging=$4
config=${5:-$src/deploy/k8s/overlays/cpu/latticekvd.conf}
case $variant in
cpu) cuda=OFF ;;
cuda) cuda=ON ;;
*) echo "build-image-steps: VARIANT must be cpu or cuda, not '$variant'" >&2; exit 2 ;;
esac
jobs=${LKV_IMAGE_JOBS:-$(nproc)}

echo "== configure ($variant) =="
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLKV_WERROR=ON -DWITH_CUDA=$cuda \
  ${LKV_CUDA_ARCHS:+"-DCMAKE_CUDA_ARCHITECTURES=$LKV_CUDA_ARCHS"}
echo "== build =="
cmake --build "$build" -j"$jobs" --target latticekvd latticekv

echo "== stage into $staging =="
rm -rf "$staging"
install -d "$staging/usr/local/bin" "$staging/usr/local/share/latticekv" \
  "$staging/etc/latticekv/config"
install -m 0755 "$build/server/latticekvd" "$staging/usr/local/bin/latticekvd"
install -m 0755 "$build/clients/cli/latticekv" "$staging/usr/local/bin/latticekv"
install -m 0644 "$config" "$staging/etc/latticekv/config/latticekvd.conf"
strip --strip-unneeded "$staging/usr/local/bin/latticekvd" "$staging/usr/local/bin/latticekv"

# Shared libraries -> the Debian packages that ship them. A library that no
# package owns (e.g. a shared libcudart from /usr/local/cuda) fails here: the
# runtime image would not have it.
pkgs=$staging/usr/local/share/latticekv/runtime-packages.txt
libs=$(ldd "$staging/usr/local/bin/latticekvd" "$staging/usr/local/bin/latticekv" |
  awk '/not found/ { print "MISSING:" $1; next } $2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)
if echo "$libs" | grep -q '^MISSING:'; then
  echo "build-image-steps: unresolved libraries: $(echo "$libs" | grep '^MISSING:')" >&2
  exit 1
fi
: >"$pkgs.tmp"
for lib in $libs; do
  owner=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null ||
    dpkg -S "/usr$lib" 2>/dev/null || true)
  [ -n "$owner" ] || { echo "build-image-steps: no Debian package ships $lib" >&2; exit 1; }
  echo "$owner" | head -n1 | cut -d: -f1 >>"$pkgs.tmp"
done
sort -u "$pkgs.tmp" >"$pkgs"
rm -f "$pkgs.tmp"
echo "runtime packages: $(tr '\n' ' ' <"$pkgs")"

echo "== check the staged binaries =="
bin=$staging/usr/local/bin
"$bin/latticekvd" --version | grep -Eq '^latticekvd [0-9]+\.[0-9]+\.[0-9]+' ||
  { echo "build-image-steps: latticekvd --version printed no version" >&2; exit 1; }
"$bin/latticekvd" --help | grep -q -- '--listen ADDR' ||
  { echo "build-image-steps: latticekvd --help lists no --listen" >&2; exit 1; }
"$bin/latticekv" --help >/dev/null

# Start the staged daemon on the deployment's config file, as the image's
# user when possible, with its socket in a temp dir; wait for ready, stop it.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$bin/latticekvd" "$tmp/latticekvd"
cp "$staging/etc/latticekv/config/latticekvd.conf" "$tmp/latticekvd.conf"
chmod 0755 "$tmp"
run=""
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
  chown 65532:65532 "$tmp"
  run="setpriv --reuid 65532 --regid 65532 --clear-groups"
fi
# The cuda variant is checked on the C codec: build machines have no GPU.
$run "$tmp/latticekvd" --config "$tmp/latticekvd.conf" --backend cpu \
  --listen "unix:$tmp/lkv.sock" --log-format kv 2>"$tmp/log" &
pid=$!
tries=0
until grep -q 'event=ready' "$tmp/log"; do
  tries=$((tries + 1))
  if [ $tries -ge 100 ] || ! kill -0 $pid 2>/dev/null; then
    echo "build-image-steps: the staged daemon did not become ready:" >&2
    cat "$tmp/log" >&2
    kill $pid 2>/dev/null || true
    exit 1
  fi
  sleep 0.1
done
[ -S "$tmp/lkv.sock" ] || { echo "build-image-steps: no socket at $tmp/lkv.sock" >&2; exit 1; }
kill -TERM $pid
rc=0
wait $pid || rc=$?
[ $rc -eq 0 ] || { echo "build-image-steps: daemon exited $rc after SIGTERM:" >&2; cat "$tmp/log" >&2; exit 1; }
echo "staged $variant image contents in $staging: ready as uid $(stat -c %u "$tmp"), exit 0 on SIGTERM"
