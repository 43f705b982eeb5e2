#!/usr/bin/env bash
# Installs vigil's build and test dependencies from Debian 12's archive when any is missing.
# Quiet when everything is present. Sourced by .ci/demo (which installs only what it needs) and
# .ci/test.
vigil_packages=(
  g++ meson ninja-build pkg-config
  libuv1-dev nlohmann-json3-dev libcli11-dev doctest-dev libpcre2-dev libhttp-parser-dev
  python3 util-linux procps clang-format curl
  # tests/docs: the unit-file JSON Schema against the loader (Draft 2020-12 needs jsonschema >= 4),
  # and the man pages rendered by groff and linted by mandoc
  python3-jsonschema groff-base mandoc
  python3-yaml iproute2 # tests/packaging/test_containers.py: the Kubernetes YAML; `ip` for loopback
  debhelper dpkg-dev lintian # tests/packaging/test_deb.py: packaging/build-deb, lintian
  clang libclang-rt-14-dev # .ci/fuzz: libFuzzer and the sanitizers' runtimes
  # systemd-notify and libsystemd: the real sd_notify clients of tests/integration/test_health.py
  # (skipped without them). Not prometheus (promtool, ~100 MB): its check runs when present.
  systemd
  # python3-systemd: systemd.daemon.listen_fds() is libsystemd's sd_listen_fds(), a real consumer
  # of the socket-activation variables (tests/integration/test_listen.py)
  python3-systemd
)

# What .ci/demo needs: the build dependencies (meson configures tests/ too, which wants doctest's
# header) and python3 for the demo's web unit. Nothing only the tests use.
# shellcheck disable=SC2034 # used by .ci/demo, which sources this file
vigil_demo_packages=(
  g++ meson ninja-build pkg-config
  libuv1-dev nlohmann-json3-dev libcli11-dev doctest-dev libpcre2-dev libhttp-parser-dev
  python3
)

# vigil_install_packages [--progress] PKG...: install those of PKG that are missing from Debian's
# archive (with sudo unless root). Silent when none is missing. Otherwise it names them; with
# --progress it also says what apt-get is doing and prints a line per package set up.
vigil_install_packages() {
  local progress=0
  if [ "${1-}" = --progress ]; then progress=1; shift; fi
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "vigil: installing missing packages: ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  if [ "$progress" -eq 0 ]; then
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    return
  fi
  echo "vigil:   apt-get update (the package lists)" >&2
  "${sudo[@]}" apt-get update -qq >/dev/null
  echo "vigil:   apt-get install (with what they depend on; a line per package set up)" >&2
  local log; log=$(mktemp)
  # With pipefail (the callers set it) the pipeline fails when apt-get does.
  if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" 2>&1 |
    tee "$log" | { grep --line-buffered '^Setting up' | sed -u 's/^/vigil:     /' >&2; true; }; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

# Everything .ci/test needs, quietly.
vigil_install_deps() {
  vigil_install_packages "${vigil_packages[@]}"
}

# vigil_build DIR [meson options...]: configure once, then build (quietly unless it fails).
vigil_build() {
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log" >&2; return 1; }
    rm -f "$dir.setup.log"
  fi
  local log; log=$(mktemp)
  if ! ninja -C "$dir" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; return 1; fi
  rm -f "$log"
}
