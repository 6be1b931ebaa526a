#!/usr/bin/env bash
# Installs the Debian 12 packages samepage needs to build and test, and
# nothing else. Safe to run again: it only calls apt-get for what is missing.
set -euo pipefail

packages=(
	build-essential pkg-config      # compiler, make, pkg-config
	libcmocka-dev                   # the test framework
	libjson-c-dev                   # JSON output of the CLI
	libxxhash-dev                   # page hashing (user-space engine)
	mandoc                          # man page lint in the tests
	util-linux procps               # flock, setpriv; ps
	libxml2-utils                   # xmllint: the plot tests parse the SVG
	libmicrohttpd-dev               # samepage exporter's HTTP server
	libncurses-dev                  # samepage top's terminal view
	prometheus tmux                 # exporter and top tests: a real scraper, a real terminal
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "setup: all packages present"
	exit 0
fi

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
	"${sudo[@]}" apt-get update
	"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
