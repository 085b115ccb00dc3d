# syntax=docker/dockerfile:1
# covreq's service image (docs/operations.md, "Container image"):
#   docker build -t covreq:0.1.0 .
#   docker run --read-only --tmpfs /tmp -v covreq-data:/var/lib/covreq -p 8000:8000 covreq:0.1.0
# Rules: the tree baked in at COVREQ_RULES (this repository's rules/), or mount another tree there,
# or set COVREQ_BUNDLE_URL (it wins over COVREQ_RULES). Writable paths: /var/lib/covreq (audit file,
# unpacked bundles) and /tmp (the metrics folder of --workers N); the root filesystem may be read-only.
# tests/test_container_image.py runs this file's pip steps and command in a virtualenv where docker is absent.

ARG PYTHON=3.12-slim-bookworm

FROM python:${PYTHON} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY grammar grammar
COPY engine engine
COPY service service
COPY dask_batch dask_batch
COPY covreq covreq
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:${PYTHON}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COVREQ_RULES=/srv/covreq/rules \
    COVREQ_AUDIT=/var/lib/covreq/audit.jsonl \
    COVREQ_BUNDLE_DIR=/var/lib/covreq/bundles
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels pip install --no-cache-dir /wheels/*.whl
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin covreq \
 && mkdir -p /var/lib/covreq \
 && chown 10001:10001 /var/lib/covreq
COPY rules /srv/covreq/rules
USER 10001:10001
WORKDIR /var/lib/covreq
VOLUME ["/var/lib/covreq"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
CMD ["covreq", "serve", "--host", "0.0.0.0", "--port", "8000"]
