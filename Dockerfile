# syntax=docker/dockerfile:1
# One image for both roles of a deployment (docs/deployment.md):
#   the API:     docker run -p 8000:8000 IMAGE                      (serve; add --role api next to workers)
#   a worker:    docker run -p 8001:8001 IMAGE worker --health-host 0.0.0.0
#   migrations:  docker run IMAGE migrate                           (serve and worker also migrate at start)
# Build from the repository root:  docker build -t collection-api .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the package and its dependencies in a virtualenv ---------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# the manifest first: the dependencies' layer is reused while only the code changes
COPY apps/api/pyproject.toml ./
RUN python - <<'PY' > requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
RUN /opt/venv/bin/pip install -r requirements.txt
COPY apps/api/ ./
RUN /opt/venv/bin/pip install --no-deps .

# --- runtime: the virtualenv, a user without privileges, nothing else -----------------
FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin app \
 && mkdir /data && chown app:app /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data
USER 10001:10001
WORKDIR /data
# 8000: the API and web UI (serve); 8001: a worker's probes and /metrics
EXPOSE 8000 8001
# SIGTERM drains (runs handed over at their next checkpoint, at most SHUTDOWN_DRAIN_SECONDS):
# give the container longer than that before it is killed (docker stop -t, Kubernetes'
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["collection-api"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
