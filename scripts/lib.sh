# Shared set-up for the scripts: system packages, the cargo target dir, the Python venv.
# Sourced, not run.

# Reuse one target dir outside the clone: RocksDB's C++ build alone takes ~8 minutes.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/junction-target}"

# Installs Debian packages that are missing (needs root or sudo).
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# RocksDB's bindings run bindgen, which needs libclang.
ensure_build_deps() {
  ensure_packages libclang-dev
  command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
}

# integration-tests/node/node_modules with the Node test clients (MQTT.js), as locked.
ensure_node_clients() {
  if ! command -v npm >/dev/null; then
    ensure_packages nodejs npm
  fi
  (cd integration-tests/node && npm ci --no-audit --no-fund --loglevel=error)
}

# A venv at .venv with the Python test clients.
ensure_python_clients() {
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  .venv/bin/pip install -q --disable-pip-version-check -r integration-tests/python/requirements.txt
}
