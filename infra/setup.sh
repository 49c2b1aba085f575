#!/usr/bin/env bash
# Sets up a fresh Debian machine for Soundscape: the Debian packages it runs on (Java and
# Maven for Kafka, the PostgreSQL 15 server) and a virtualenv (.venv) holding the project
# with its extras. Safe to run again: it installs only what is missing or changed.
#
#   --docker           also Debian's Docker engine, docker-compose and debootstrap (the
#                      testcontainers backend and docker-compose.yml run on images built
#                      locally with them)
#   --browser          also Debian's chromium and chromium-driver (the web app's tests
#                      drive them headless)
#   --mqtt             also Debian's mosquitto (the notifier's tests publish through it)
#   SOUNDSCAPE_EXTRAS  pip extras to install (default: dev = serve + tests)
#   SOUNDSCAPE_VENV    virtualenv folder (default: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_DOCKER=0
WITH_BROWSER=0
WITH_MQTT=0
for arg in "$@"; do
  case "$arg" in
    --docker) WITH_DOCKER=1 ;;
    --browser) WITH_BROWSER=1 ;;
    --mqtt) WITH_MQTT=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "error: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

EXTRAS=${SOUNDSCAPE_EXTRAS:-dev}
VENV=${SOUNDSCAPE_VENV:-.venv}
PYTHON=${PYTHON:-python3}
# pulseaudio (+ the ALSA plugin), libportaudio2 and sox give the station a real capture
# device without a microphone: a PulseAudio null sink whose monitor PortAudio records.
DEBIAN_PACKAGES=(openjdk-17-jre-headless maven postgresql-15 postgresql-client-15 util-linux
  pulseaudio pulseaudio-utils libasound2-plugins libportaudio2 sox)
DOCKER_PACKAGES=(docker.io docker-compose debootstrap)
((WITH_DOCKER)) && DEBIAN_PACKAGES+=("${DOCKER_PACKAGES[@]}")
((WITH_BROWSER)) && DEBIAN_PACKAGES+=(chromium chromium-driver)
((WITH_MQTT)) && DEBIAN_PACKAGES+=(mosquitto)

step() { printf '\n== %s\n' "$*"; }
started=$SECONDS

step "Debian packages"
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The Debian package starts a system cluster we do not use; Soundscape runs its own.
  if [[ " ${missing[*]} " == *" postgresql-15 "* ]] && command -v pg_ctlcluster >/dev/null; then
    $SUDO pg_ctlcluster 15 main stop 2>/dev/null || true
  fi
  # Nor the system MQTT broker: the tests start their own on a free loopback port.
  if [[ " ${missing[*]} " == *" mosquitto "* ]]; then
    $SUDO service mosquitto stop 2>/dev/null || true
  fi
else
  echo "all present: ${DEBIAN_PACKAGES[*]}"
fi

step "Python virtualenv ($VENV, extras: $EXTRAS)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "error: Python 3.11+ is needed, $PYTHON is $("$PYTHON" --version)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
stamp="$VENV/.soundscape-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)-$EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
  echo "$want" > "$stamp"
else
  echo "up to date"
fi
echo "setup done in $((SECONDS - started)) s; the CLI is $VENV/bin/soundscape"
