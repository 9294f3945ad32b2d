#!/usr/bin/env bash
# Generate and build the partner clients from proto/ (docs/clients.md):
#
#   bash clients/build.sh [go] [java] [ts]     (no argument: all three; `make clients`)
#
#   go    buf generate (buf.gen.go.yaml) → clients/go/gen; go build → .cache/clients/bin/zc-journey-go
#   java  protoc + protoc-gen-grpc-java from Maven Central; buf generate (buf.gen.java.yaml) →
#         clients/java/gen; mvn package → clients/java/target/zerocontact-client.jar (+ lib/)
#   ts    npm ci (clients/ts); buf generate (buf.gen.ts.yaml) → clients/ts/src/gen; tsc → dist/
#
# Generated code is git-ignored and made at build time from the protos on the branch, so RPCs
# and fields other changes add to the gateway's protos flow in. Cached: each language is
# skipped while a hash of its inputs (the partner protos, its buf template, its sources and
# lock files, this script) matches .cache/clients/<lang>.stamp and its artefact exists.
# FORCE=1 rebuilds. Needs .venv (`make venv`) and node_modules/.bin/buf (`npm ci` at the root).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=$ROOT/.cache/clients
BIN=$CACHE/bin
BUF=$ROOT/node_modules/.bin/buf
mkdir -p "$BIN"

[[ -x $BUF ]] || { echo "clients: $BUF missing: run 'npm ci' at the root (make buf-lint)" >&2; exit 1; }

# Versions of the Java generators: the same as the runtime in clients/java/pom.xml.
pom_property() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" clients/java/pom.xml | head -1; }

inputs_hash() {  # LANG: hash of everything the language's artefact depends on
  local lang=$1
  {
    find proto/zerocontact/gateway proto/zerocontact/common -name '*.proto' | sort | xargs cat
    cat buf.yaml "buf.gen.$lang.yaml" clients/build.sh
    git ls-files -co --exclude-standard "clients/$lang" | sort | xargs cat
  } | sha256sum | cut -c1-16
}

fresh() {  # LANG ARTEFACT: true when the stamp matches and the artefact exists
  [[ -z ${FORCE:-} && -e $2 && "$(cat "$CACHE/$1.stamp" 2>/dev/null)" == "$(inputs_hash "$1")" ]]
}

timed() {  # LANG COMMAND...: run, then print how long it took
  local lang=$1 start=$SECONDS
  shift
  "$@"
  echo "clients: $lang built in $((SECONDS - start)) s"
}

build_go() {
  command -v go >/dev/null || { echo "clients: go not found (apt-get install golang-go)" >&2; return 1; }
  (cd clients/go && GOBIN=$BIN go install tool)  # protoc-gen-go, protoc-gen-go-grpc (go.mod)
  "$BUF" generate --template buf.gen.go.yaml
  (cd clients/go && go build -trimpath -o "$BIN/zc-journey-go" ./cmd/journey && go vet ./...)
}

build_java() {
  command -v mvn >/dev/null || { echo "clients: mvn not found (apt-get install maven)" >&2; return 1; }
  local protoc_v grpc_v
  protoc_v=$(pom_property protobuf.version)
  grpc_v=$(pom_property grpc.version)
  if [[ "$(cat "$BIN/.java-generators" 2>/dev/null)" != "$protoc_v $grpc_v" ]]; then
    mvn -q -B -Dstyle.color=never -f clients/java/pom.xml dependency:copy -DoutputDirectory="$BIN" -Dmdep.stripVersion=true \
      -Dartifact="com.google.protobuf:protoc:$protoc_v:exe:linux-x86_64"
    mvn -q -B -Dstyle.color=never -f clients/java/pom.xml dependency:copy -DoutputDirectory="$BIN" -Dmdep.stripVersion=true \
      -Dartifact="io.grpc:protoc-gen-grpc-java:$grpc_v:exe:linux-x86_64"
    mv -f "$BIN/protoc-linux-x86_64.exe" "$BIN/protoc"
    mv -f "$BIN/protoc-gen-grpc-java-linux-x86_64.exe" "$BIN/protoc-gen-grpc-java"
    chmod +x "$BIN/protoc" "$BIN/protoc-gen-grpc-java"
    echo "$protoc_v $grpc_v" > "$BIN/.java-generators"
  fi
  "$BUF" generate --template buf.gen.java.yaml
  mvn -q -B -Dstyle.color=never -f clients/java/pom.xml package
}

build_ts() {
  command -v npm >/dev/null || { echo "clients: npm not found (install Node.js 20+)" >&2; return 1; }
  (cd clients/ts && npm ci --no-audit --no-fund --silent)
  # google/rpc/{status,error_details}.proto from the googleapis-common-protos wheel in .venv
  local rpc
  rpc=$(.venv/bin/python -c 'import google.rpc, pathlib; print(pathlib.Path(google.rpc.__path__[0]))')
  rm -rf "$CACHE/googleapis" && mkdir -p "$CACHE/googleapis/google/rpc"
  cp "$rpc/status.proto" "$rpc/error_details.proto" "$CACHE/googleapis/google/rpc/"
  "$BUF" generate --template buf.gen.ts.yaml
  (cd clients/ts && rm -rf dist && npx tsc -p .)
}

artefact() {
  case $1 in
    go) echo "$BIN/zc-journey-go" ;;
    java) echo clients/java/target/zerocontact-client.jar ;;
    ts) echo clients/ts/dist/journey.js ;;
    *) echo "clients: unknown language $1 (go, java, ts)" >&2; return 1 ;;
  esac
}

langs=("$@")
[[ ${#langs[@]} -gt 0 ]] || langs=(go java ts)
for lang in "${langs[@]}"; do
  out=$(artefact "$lang")
  if fresh "$lang" "$out"; then
    echo "clients: $lang up to date ($out)"
    continue
  fi
  hash=$(inputs_hash "$lang")
  timed "$lang" "build_$lang"
  echo "$hash" > "$CACHE/$lang.stamp"
done
