#!/usr/bin/env bash
# The Debian packages that building libvirt-python needs (its C headers and pkg-config), the libraries and
# fonts WeasyPrint draws invoice PDFs with, and Node.js with
# npm (`npm ci` installs the consoles' browser libraries, package-lock.json), installed with apt when missing
# and when running as root; otherwise a clear message naming them.
set -euo pipefail

# WeasyPrint (invoice PDFs) draws with Pango (which brings HarfBuzz and fontconfig) and needs fonts.
needed=(pkg-config libvirt-dev gcc python3-dev python3-venv libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core)
missing=()
for package in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# A Python that is not Debian's own (pyenv, a venv) brings its own headers and venv module.
if ! python3 -c 'import sys; sys.exit(sys.prefix != "/usr")' 2>/dev/null; then
  missing=("${missing[@]/python3-dev}")
  missing=("${missing[@]/python3-venv}")
fi
# A node and npm that are not Debian's (NodeSource, nvm) will do as well.
if ! { command -v node && command -v npm; } >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
read -r -a missing <<< "${missing[*]}"
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "Missing system packages: ${missing[*]}" >&2
  echo "Install them first, e.g.: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
