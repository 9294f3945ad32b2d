# syntax=docker/dockerfile:1
# One image per deployable service, all from this file: SERVICE names the workspace member
# services/<SERVICE> (distribution zerocontact-<SERVICE>). Each image holds that service, the
# platform library, the generated contracts and their locked dependencies, nothing else.
#
#   docker build --build-arg SERVICE=identity  -t zerocontact-identity  .
#   docker build --build-arg SERVICE=loan      -t zerocontact-loan      .
#   docker build --build-arg SERVICE=payroll   -t zerocontact-payroll   .
#   docker build --build-arg SERVICE=marketing -t zerocontact-marketing .
#   docker build --build-arg SERVICE=assistant -t zerocontact-assistant .
#   docker build --build-arg SERVICE=signals   -t zerocontact-signals   .
#   docker build --build-arg SERVICE=gateway   -t zerocontact-gateway   .
#   docker build --build-arg SERVICE=skeleton  -t zerocontact-skeleton  .  # accounts and projection
#
# (`docker compose build` builds them all: docker-compose.yml passes SERVICE per service.)
# The command comes from the deployment (docker-compose.yml, deploy/k8s/base/*/deployment.yaml).
#
# Stages (docs/deployment.md, "Images"):
#   uv         the Python base with the pinned uv
#   manifests  the workspace's pyproject files only: the dependency layer below is rebuilt only
#              when uv.lock or a pyproject changes, not when source code does
#   contracts  protobuf/gRPC modules generated from proto/ with grpcio-tools and mypy-protobuf
#              at the lock's versions, in a throw-away venv; the same for every SERVICE
#   build      /opt/venv: `uv sync --no-dev --no-editable --package zerocontact-$SERVICE`
#   runtime    the slim Python base, /opt/venv and the topic catalog; no compilers, no pip, no
#              uv; runs as uid 10001 and writes nothing but /tmp (a read-only root works)
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS uv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy
# The same uv as the Makefile and the lock's dev group.
RUN pip install -q uv==0.13.9
WORKDIR /src

FROM uv AS manifests
COPY libs ./libs
COPY services ./services
COPY clients/python ./clients/python
RUN find libs services clients -mindepth 2 -maxdepth 2 ! -name pyproject.toml -exec rm -rf {} +

FROM uv AS contracts
COPY pyproject.toml uv.lock ./
COPY --from=manifests /src/ ./
# grpcio-tools and mypy-protobuf with their dependencies at the dev group's locked versions
# (the exported hashes are checked), not the whole dev group.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv export --frozen --only-group dev --no-emit-workspace -q -o /tmp/dev.txt \
 && uv venv -q /opt/build \
 && uv pip install -q --python /opt/build/bin/python -c /tmp/dev.txt grpcio-tools mypy-protobuf
COPY proto ./proto
RUN /opt/build/bin/python proto/generate.py --force

FROM uv AS build
ARG SERVICE
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1
COPY pyproject.toml uv.lock README.md ./
COPY --from=manifests /src/ ./
RUN test -n "$SERVICE" -a -f "services/$SERVICE/pyproject.toml" \
 || { echo "SERVICE='$SERVICE': pass --build-arg SERVICE=<a folder of services/>" >&2; exit 1; }
# Third-party dependencies first (their own layer), then the workspace members as wheels.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync -q --frozen --no-dev --no-editable --no-install-workspace --package "zerocontact-$SERVICE"
COPY libs ./libs
COPY services/${SERVICE} ./services/${SERVICE}
COPY --from=contracts /src/libs/contracts/src ./libs/contracts/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync -q --frozen --no-dev --no-editable --package "zerocontact-$SERVICE"

FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
# pip and setuptools are not needed at run time; an image that cannot install is harder to abuse.
RUN python -m pip uninstall -q -y pip setuptools wheel 2>/dev/null || true \
 && groupadd --system --gid 10001 zerocontact \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin zerocontact
COPY --from=build /opt/venv /opt/venv
# `zerocontact topics create` reads the catalog from here (ZC_TOPIC_CATALOG).
COPY proto/topics.toml /app/proto/topics.toml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ZC_TOPIC_CATALOG=/app/proto/topics.toml
LABEL org.opencontainers.image.title="zerocontact-${SERVICE}" \
      org.opencontainers.image.source="Dockerfile --build-arg SERVICE=${SERVICE}"
WORKDIR /app
USER 10001:10001
# Health: every HTTP service answers /healthz and /readyz. There is no curl in the image; the
# compose file and Kubernetes probe with Python's urllib or httpGet (docs/deployment.md).
CMD ["zerocontact", "--help"]
