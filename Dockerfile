# Two targets from one file: `web` (no torch) and `worker` (torch + transformers).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 prefloop && mkdir -p /data /checkpoints /hf-cache \
    && chown prefloop /data /checkpoints /hf-cache
WORKDIR /srv/prefloop
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static

FROM base AS web
RUN pip install -e .
USER prefloop
EXPOSE 8000

FROM base AS worker
# CUDA wheels of torch come from PyPI's default index; pin the version the project is tested with.
RUN pip install torch==2.13.0 && pip install -e '.[worker]'
USER prefloop
