#!/usr/bin/env bash
# Installs the Debian 12 packages edgelm needs, only those that are missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang
      libvulkan-dev glslc glslang-tools spirv-tools mesa-vulkan-drivers vulkan-validationlayers
      libopenblas-serial-dev libcriterion-dev libpcre2-dev
      libjansson-dev libsodium-dev libmicrohttpd-dev libcurl4-openssl-dev python3-jinja2 curl
      abigail-tools python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
