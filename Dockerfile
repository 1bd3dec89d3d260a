# Spoc: one image for every service. The command picks what runs:
#   spoc serve <intake|routing|sla|notify>   one service on RabbitMQ + PostgreSQL
#   spoc migrate <service>                   that service's database migrations, then exit
#   spoc up                                  the embedded default (the CMD below)
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# build: the locked workspace, resolved into a self-contained virtual environment at /opt/spoc
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/spoc

# The same uv as scripts/setup, from PyPI.
RUN pip install uv==0.13.9

WORKDIR /src

# Third-party dependencies first: this layer is rebuilt only when the lock or a pyproject changes.
# uv needs every workspace member's pyproject.toml to check the lock, but none of their code.
COPY pyproject.toml uv.lock README.md LICENSE ./
COPY libs/contracts/pyproject.toml libs/contracts/
COPY libs/platform/pyproject.toml libs/platform/
COPY services/intake/pyproject.toml services/intake/
COPY services/routing/pyproject.toml services/routing/
COPY services/sla/pyproject.toml services/sla/
COPY services/notify/pyproject.toml services/notify/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-workspace

# Then Spoc itself, installed as ordinary (non-editable) packages: the runtime image needs /opt/spoc
# only, not the sources in /src. Migrations ship inside each service's package.
COPY libs/ libs/
COPY services/ services/
COPY src/ src/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable \
 && /opt/spoc/bin/spoc --help > /dev/null

# ---------------------------------------------------------------------------------------------
# runtime: the same base (the venv's python points at /usr/local/bin/python3.11), no build tools
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="Spoc" \
      org.opencontainers.image.description="Spoc service desk: intake, routing, sla and notify"

ENV PATH=/opt/spoc/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without a user database.
RUN groupadd --system --gid 10001 spoc \
 && useradd --system --uid 10001 --gid spoc --home-dir /home/spoc --create-home \
            --shell /usr/sbin/nologin spoc \
 && install -d -o spoc -g spoc /var/lib/spoc

COPY --from=build /opt/spoc /opt/spoc

USER 10001:10001
WORKDIR /home/spoc
EXPOSE 8000

ENTRYPOINT ["spoc"]
# With no command, the embedded default: all four services in one process, SQLite files and the
# in-process bus under /var/lib/spoc (mount a volume there to keep them). Compose and Kubernetes
# override this with `serve <service>` / `migrate <service>`.
CMD ["up", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/var/lib/spoc"]
