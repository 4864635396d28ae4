#!/usr/bin/env bash
# The GPU check of docs/benchmarks.md (≤ 8 minutes on one H200): benchmarks/gpu_check.sh [--dry-run] [...]
cd "$(dirname "$0")/.." && PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}" benchmarks/gpu_check.py "$@"
