#!/usr/bin/env bash
# Debian packages the tests use. With --if-possible it installs only when it can (root and apt-get
# present) and otherwise lists what is missing; without it, a failed install is an error.
set -euo pipefail
packages=(openssl mosquitto-clients chromium python3-paho-mqtt)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
elif [ "${1:-}" = "--if-possible" ]; then
  echo "warning: these Debian packages are missing and some tests need them: ${missing[*]}" >&2
else
  echo "error: need root and apt-get to install: ${missing[*]}" >&2
  exit 1
fi
