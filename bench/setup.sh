#!/usr/bin/env bash
# Installs what the benchmarks compare against, into the active environment.
# face_recognition asks for the source build of dlib; dlib-bin provides the same
# module prebuilt, so face_recognition itself goes in without its dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[bench,plot]"
python -m pip install -q --no-deps "face_recognition==1.3.0"
python -c "import face_recognition, dlib; print('face_recognition ready, dlib', dlib.__version__)"
