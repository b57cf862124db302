# One image for every Concord service: api, worker, dashboard, sandbox, traffic, db upgrade.
# docker-compose.yml passes the subcommand, e.g. `command: ["api", "--host", "0.0.0.0"]`.

# --- build: wheels for everything, with a compiler at hand for any sdist-only dependency ---
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/concord
ENV PATH=/opt/concord/bin:$PATH

WORKDIR /src
# Only what the package needs: no tests, no .venv, no local databases.
COPY pyproject.toml README.md ./
COPY api ./api
COPY concord ./concord
COPY dashboard ./dashboard
COPY lineage ./lineage
COPY orchestrator ./orchestrator
COPY reconciliation ./reconciliation
COPY sandbox ./sandbox
RUN pip install --upgrade pip && pip install .

# --- run: the installed environment, as an unprivileged user ---
FROM python:3.11-slim

ENV PATH=/opt/concord/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CONCORD_RECONCILIATION_DIR=/var/lib/concord/reconciliation-runs

RUN groupadd --system --gid 10001 concord \
    && useradd --system --uid 10001 --gid concord --home-dir /var/lib/concord \
        --shell /usr/sbin/nologin concord \
    && mkdir -p /var/lib/concord/reconciliation-runs /var/lib/concord/sandbox \
    && chown -R concord:concord /var/lib/concord

COPY --from=build /opt/concord /opt/concord

USER concord
WORKDIR /var/lib/concord

EXPOSE 8000 8100 8501 9100
ENTRYPOINT ["concord"]
CMD ["--help"]
