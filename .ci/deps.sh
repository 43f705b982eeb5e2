#!/usr/bin/env bash
# Installs vigil's build and test dependencies from Debian 12's archive when any is missing.
# Quiet when everything is present. Sourced by .ci/demo and .ci/test.
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
)

vigil_install_deps() {
  local missing=() p
  for p in "${vigil_packages[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "vigil: installing missing packages: ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq >/dev/null
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
