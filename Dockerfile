# syntax=docker/dockerfile:1
# One image for the whole Python suite; each service or worker picks its entrypoint by command
# (docker-compose.yml, deploy/k8s/base/*/deployment.yaml). Build: `docker build -t zerocontact .`
#
# build:   the locked dependencies, protobuf modules generated from proto/ with grpcio-tools,
#          and a runtime virtualenv holding only the runtime dependencies plus the package.
# runtime: the slim Python base, that virtualenv, no compilers, no pip; runs as uid 10001 and
#          writes nothing but /tmp, so a read-only root filesystem works.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
# The same uv as the Makefile; everything else comes from requirements.lock.
RUN pip install uv==0.13.9
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
# Build tools (grpcio-tools, mypy-protobuf) live in /opt/build and never reach the runtime.
RUN uv venv -q /opt/build && uv pip sync -q --python /opt/build/bin/python requirements.lock
# Runtime dependencies only (pyproject's [project.dependencies]), at the lock's exact versions.
RUN uv venv -q /opt/venv \
 && uv pip install -q --python /opt/venv/bin/python -c requirements.lock -r pyproject.toml
COPY proto ./proto
COPY services ./services
RUN /opt/build/bin/python proto/generate.py --force \
 && uv pip install -q --python /opt/venv/bin/python --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
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
WORKDIR /app
USER 10001:10001
# Health: every HTTP service answers /healthz and /readyz. There is no curl in the image; the
# compose file and Kubernetes probe with Python's urllib or httpGet (docs/deployment.md).
CMD ["zerocontact", "--help"]
