#!/usr/bin/env bash
# Install the deployment validators, pinned, into .cache/tools (git-ignored). Idempotent: each
# tool is rebuilt only when its pinned version (or the source of deploycheck) changes, so a
# second run takes well under a second. Needs Go (the Go module proxy) and .venv (`make venv`).
#
#   kustomize        sigs.k8s.io/kustomize/kustomize/v5        renders base + overlays
#   grpcurl          github.com/fullstorydev/grpcurl           the gateway via server reflection
#   ghz              github.com/bojand/ghz                     gRPC load generator (bench/gateway_overhead.py;
#                                                               v0.93.0 is the newest the module proxy serves)
#   kube-score       github.com/zegl/kube-score                best-practice lint (kube-linter's
#                                                               module is not served here)
#   deploycheck      deploy/tools/deploycheck (our Go module)  compose file via compose-go; the
#                                                               MongoDBCommunity CR via the operator's API types;
#                                                               the Dockerfile via BuildKit's frontend (lint mode)
#   kubernetes-validate (PyPI, in .cache/tools/venv)            Kubernetes API JSON schemas, offline
set -euo pipefail
cd "$(dirname "$0")/../.."

KUSTOMIZE_VERSION=v5.8.1
KUBE_SCORE_VERSION=v1.20.0
GRPCURL_VERSION=v1.9.4
GHZ_VERSION=v0.93.0

TOOLS="$PWD/.cache/tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

command -v go >/dev/null || { echo "error: go not found: install Go 1.26.8+ (deploycheck/go.mod; apt-get install golang-go)" >&2; exit 1; }
[ -x .venv/bin/uv ] || { echo "error: .venv/bin/uv not found: run \`make venv\` first" >&2; exit 1; }

# go_tool NAME STAMP-CONTENT COMMAND...: run COMMAND unless BIN/NAME exists with the same stamp.
go_tool() {
  local name=$1 want=$2
  shift 2
  if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/.$name.stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  echo "installing $name ($want)"
  "$@"
  echo "$want" > "$BIN/.$name.stamp"
}

go_tool kustomize "$KUSTOMIZE_VERSION" \
  env GOBIN="$BIN" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
go_tool kube-score "$KUBE_SCORE_VERSION" \
  env GOBIN="$BIN" go install "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
go_tool grpcurl "$GRPCURL_VERSION" \
  env GOBIN="$BIN" go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
go_tool ghz "$GHZ_VERSION" \
  env GOBIN="$BIN" go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
deploycheck_hash=$(cat deploy/tools/deploycheck/go.mod deploy/tools/deploycheck/go.sum \
  deploy/tools/deploycheck/*.go | sha256sum | cut -c1-16)
go_tool deploycheck "$deploycheck_hash" \
  bash -c "cd deploy/tools/deploycheck && go build -trimpath -o '$BIN/deploycheck' ."

lock_hash=$(sha256sum deploy/tools/requirements.lock | cut -c1-16)
if [ "$(cat "$TOOLS/venv/.stamp" 2>/dev/null)" != "$lock_hash" ]; then
  echo "installing kubernetes-validate into .cache/tools/venv"
  [ -x "$TOOLS/venv/bin/python" ] || .venv/bin/uv venv -q --python .venv/bin/python "$TOOLS/venv"
  .venv/bin/uv pip sync -q --python "$TOOLS/venv/bin/python" --require-hashes deploy/tools/requirements.lock
  echo "$lock_hash" > "$TOOLS/venv/.stamp"
fi
