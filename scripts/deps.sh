#!/usr/bin/env bash
# Installs the Debian packages hallu needs, when any is missing.
# usage: scripts/deps.sh [run|test] [--dry-run]
#   run   what building and running need (scripts/run.sh)
#   test  those plus the test suite's extras: PyTorch references, clang for the
#         fuzz targets (scripts/test.sh; the default, so .ci/run keeps working)
#   --dry-run  only print the packages that would be installed
set -euo pipefail
MODE=test DRY=0
for a in "$@"; do
  case "$a" in
    run|test) MODE=$a ;;
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,7s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "deps.sh: unknown argument '$a' (usage: scripts/deps.sh [run|test] [--dry-run])" >&2; exit 2 ;;
  esac
done
RUN_PKGS=(build-essential cmake pkg-config libdnnl-dev libjpeg62-turbo-dev libpng-dev)
TEST_PKGS=(python3-torch python3-torchvision python3-numpy clang libclang-rt-14-dev libopenmpi-dev openmpi-bin iproute2)
PKGS=("${RUN_PKGS[@]}")
[ "$MODE" = run ] || PKGS+=("${TEST_PKGS[@]}")
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$DRY" -eq 1 ]; then
  echo "deps ($MODE): ${PKGS[*]}"
  echo "would install: ${missing[*]:-nothing (all present)}"
  exit 0
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
