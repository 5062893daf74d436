# Shared by scripts/up.sh and scripts/test.sh: build prerequisites and the shared target dir.
# Installs Debian packages only when missing, and fails loudly when it cannot.

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/shopstream-target}

ensure_build_deps() {
  # rdkafka's cmake-build compiles librdkafka: it needs cmake, a C++ compiler and
  # libcurl's headers (Debian's librdkafka 2.0.2 is too old for dynamic linking).
  local missing=() pkg
  for pkg in cmake g++ make pkg-config libcurl4-openssl-dev libssl-dev zlib1g-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  command -v cargo >/dev/null || { echo "error: cargo not found; install Rust (rustup) first" >&2; exit 1; }
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || { echo "error: missing packages ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2; exit 1; }
  echo "[setup] installing missing packages: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
