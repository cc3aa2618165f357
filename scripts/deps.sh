#!/bin/sh
# deps.sh: makes sure the Debian packages knwb builds against are installed.
# Called by `make` before the first build. As root it installs what is missing with apt-get
# (non-interactive); otherwise it prints the exact command to run and fails.
set -e
need="gcc make pkg-config clang-14 libclang-rt-14-dev liblua5.4-dev libopenblas-dev libyaml-dev libjansson-dev libpcre2-dev libopenmpi-dev openmpi-bin"
# extra packages for a target (e.g. `deps.sh data` for the fact builder's sources)
case "${1:-}" in
  data) need="$need unicode-cldr-core wordnet-base iso-codes tzdata" ;;
  ref)  need="$need python3-torch python3-numpy python3-regex" ;;
esac
missing=""
for p in $need; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" = 0 ]; then
  echo "deps.sh: installing:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || { echo "deps.sh: 'apt-get update' failed" >&2; exit 1; }
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "deps.sh: missing Debian packages:$missing" >&2
  echo "deps.sh: install them with: sudo $cmd" >&2
  exit 1
fi
