#!/usr/bin/env bash
# Set up the environment (scripts/setup.sh), then run the test suite; extra args go to pytest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

export FIFTYONE_DO_NOT_TRACK=true
export PLDC_NO_PROGRESS=1
export HF_HUB_OFFLINE=1
export GRADIO_ANALYTICS_ENABLED=False

exec .venv/bin/python -m pytest -q tests "$@"
