#!/usr/bin/env bash
# Installs the Debian packages hallu needs to build and test, when any is missing.
set -euo pipefail
PKGS=(build-essential cmake pkg-config libdnnl-dev libjpeg62-turbo-dev libpng-dev
      python3-torch python3-torchvision python3-numpy clang libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
