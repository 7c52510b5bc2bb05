#!/usr/bin/env bash
# Installs what building and testing slmd needs on a fresh Debian machine (run as root),
# then fetches the models. Safe to run again: it only installs what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

debs=(build-essential cmake pkg-config libpcre2-dev libxxhash-dev libsystemd-dev libjansson-dev systemd python3 python3-pip unzip valgrind strace)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

"$here/fetch-models.sh"
