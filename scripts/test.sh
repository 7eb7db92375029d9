#!/usr/bin/env bash
# Set up the environment (scripts/setup.sh) and run the whole test suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TORCHDYNAMO_DISABLE=1
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
