#!/usr/bin/env bash
# The installed size of each service image's virtual environment, without Docker: the same
# `uv sync` as the Dockerfile's build stage (--no-dev --no-editable --package zerocontact-<service>,
# bytecode compiled) into a temporary directory, then `du -sh`. "all" is every member at once
# (--all-packages): what the former single image held. docs/deployment.md, "Images".
# Needs `make venv proto` (the contracts wheel packs the generated modules). Usage:
#   bash deploy/tools/image-sizes.sh [service...]     # default: every services/* folder, then all
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .venv/bin/uv ] || { echo "error: run \`make venv proto\` first" >&2; exit 1; }
ls libs/contracts/src/zerocontact/common/v1/*_pb2.py >/dev/null 2>&1 \
  || { echo "error: no generated contracts: run \`make proto\` first" >&2; exit 1; }
if [ $# -eq 0 ]; then
  set -- $(for d in services/*/pyproject.toml; do basename "$(dirname "$d")"; done) all
fi
OUT=$(mktemp -d "${TMPDIR:-/tmp}/zc-image-venvs.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
printf '%-10s %8s  %s\n' service venv "notable contents"
for service in "$@"; do
  if [ "$service" = all ]; then select=(--all-packages); else select=(--package "zerocontact-$service"); fi
  UV_PROJECT_ENVIRONMENT="$OUT/$service" UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy \
    .venv/bin/uv sync -q --frozen --no-dev --no-editable "${select[@]}"
  size=$(du -sh "$OUT/$service" | cut -f1)
  notable=$("$OUT/$service/bin/python" - <<'PY'
from importlib import metadata
names = {d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions()}
heavy = ["dlib-bin", "opencv-python-headless", "face-recognition-models", "numpy",
         "faust-streaming", "rocksdict", "grpcio", "lxml", "pip", "setuptools"]
print(", ".join(n for n in heavy if n in names) or "-")
PY
)
  printf '%-10s %8s  %s\n' "$service" "$size" "$notable"
  rm -rf "${OUT:?}/$service"
done
