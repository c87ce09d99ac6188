#!/usr/bin/env bash
# System libraries the project needs beyond Python packages; installs only what is missing.
# - libpython3.X: Triton's Python-backend stub (from nvidia-pytriton) embeds the system's libpython.
# - chromium: the dashboard's browser tests drive Debian's Chromium (never a downloaded browser).
# - prometheus: `make up` runs Debian's Prometheus (and promtool checks the rules) on 127.0.0.1:9090.
set -euo pipefail
py_version=$(${PYTHON:-python3} -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
missing=()
ldconfig -p | grep -q "libpython${py_version}.so.1.0" || missing+=("libpython${py_version}")
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/bin/prometheus ]] || missing+=(prometheus)
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "system_deps: missing ${missing[*]}; install them (apt-get install ${missing[*]}) and retry" >&2
    exit 1
  fi
  echo "system_deps: installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
