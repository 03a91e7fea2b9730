#!/usr/bin/env bash
# Debian packages, installed with apt-get when missing.
#   scripts/system-deps.sh demo   Java (ODK Validate, bundled in pyxform): what `make demo` needs
#   scripts/system-deps.sh        that, and what the tests need: a JDK (interviews written by
#                                 ODK's form engine), Chromium (the UI browser test and the
#                                 printed questionnaire) with Noto fonts for every script,
#                                 Redis (the Celery executor test's broker) and R with survey and
#                                 haven (the release's R set-up and reference values); npm and
#                                 curl when ODK Central is there to test against
# `make demo`, `make test` and `.ci/run` call it; without root and with packages missing it says
# what to install and fails.
set -euo pipefail
need=()
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
if [ "${1:-test}" != demo ]; then
  # javac: the tests drive ODK's form engine (JavaRosa, in ODK Validate's jar) as Collect does
  command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  # Ethiopic, Khmer and Thai glyphs for the printed questionnaires of those countries
  fc-list 2>/dev/null | grep -q "NotoSansEthiopic" || need+=(fonts-noto-core)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  Rscript -e 'library(survey)' >/dev/null 2>&1 || need+=(r-cran-survey)
  Rscript -e 'library(haven)' >/dev/null 2>&1 || need+=(r-cran-haven)
  # The real ODK Central (scripts/central.sh) installs Node with npm and PostgreSQL itself.
  if bash "$(dirname "$0")/central.sh" dir >/dev/null 2>&1; then
    command -v npm >/dev/null 2>&1 || need+=(npm)
    command -v curl >/dev/null 2>&1 || need+=(curl)
  fi
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system packages missing: ${need[*]}" >&2
  echo "install them as root: apt-get install ${need[*]}  (or run: sudo $0)" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
