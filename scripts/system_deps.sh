#!/usr/bin/env bash
# Debian packages the tests drive for real: redis-server (gateway replicas), kubectl with
# kustomize (manifests), chromium + chromedriver (the playground), libpython (Triton's stub),
# npm (the IS-Net weights, the npm SDKs the gateway is tested with), openssl (the SDK tests' CA).
# Installs only what is missing; elsewhere it says what to install.
set -euo pipefail
tag="$(python3 -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')"
declare -A need=(
  [redis-server]=redis-server [kubectl]=kubernetes-client [chromium]=chromium
  [chromedriver]=chromium-driver [npm]=npm [openssl]=openssl
)
missing=()
for cmd in "${!need[@]}"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}"); done
ldconfig -p 2>/dev/null | grep -q "libpython${tag}\.so" || missing+=("libpython${tag}")
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
  # one at a time: a package this Debian lacks must not stop the others
  for pkg in "${missing[@]}"; do apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$pkg" >/dev/null || echo "could not install $pkg"; done
else
  echo "missing system packages: ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]});" \
       "the tests that need them are skipped with this reason" >&2
fi
