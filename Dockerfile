# prefloop images, one file, three targets (docker-compose.yml builds them):
#   web         the web app; no torch
#   worker-cpu  the job worker with the CPU build of torch (about 200 MB instead of several GB of CUDA)
#   worker-gpu  the job worker with PyPI's torch, which on Linux x86_64 is the CUDA build and pulls the nvidia-* wheels
#
# Layers are ordered for the cache: the lock and the dependency lists first, the dependencies installed from
# them in their own layers, the code last. A code change rebuilds only the wheel and its `pip install --no-deps`;
# only a changed lock or a changed dependency list reinstalls dependencies. Every version comes from requirements/lock.txt
# (pip constraints), so an image built next month holds what the test suite passed with.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 prefloop && mkdir -p /data /checkpoints /hf-cache \
    && chown prefloop /data /checkpoints /hf-cache
WORKDIR /srv/prefloop
COPY requirements/lock.txt requirements/
RUN pip install "$(grep -i '^pip==' requirements/lock.txt)"

# The dependency lists, read out of pyproject.toml. The install layers copy only these small files, whose
# content is what the cache compares: an edit to pyproject.toml that leaves the dependencies alone (a tool's
# settings, the description) reinstalls nothing.
FROM base AS requirements
COPY pyproject.toml ./
COPY requirements/deps.py requirements/
RUN mkdir /requirements && python requirements/deps.py > /requirements/web.txt \
    && python requirements/deps.py worker > /requirements/worker.txt

# The wheel, built once from the code and installed by every target: templates, static files and migrations
# ship inside it, so the images hold an install, not a checkout (and nothing imports from /srv/prefloop).
FROM base AS wheel
COPY pyproject.toml README.md LICENSE ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
RUN pip wheel --no-deps --wheel-dir /dist .

FROM base AS web-deps
COPY --from=requirements /requirements/web.txt /tmp/
RUN pip install -c requirements/lock.txt -r /tmp/web.txt && rm /tmp/web.txt

FROM web-deps AS web
COPY --from=wheel /dist /dist
RUN pip install --no-deps /dist/*.whl && rm -rf /dist
USER prefloop
EXPOSE 8000
CMD ["prefloop", "serve", "--host", "0.0.0.0", "--port", "8000"]

# torch is installed first and by itself: resolved together with transformers from PyPI's default index it
# would be the CUDA build. The CPU index holds torch but not all of torch's dependencies at the locked
# versions, hence --no-deps here; the next layer installs those from PyPI under the lock and keeps this torch
# (the lock's `torch==2.13.0` admits the local version 2.13.0+cpu).
FROM base AS worker-cpu-deps
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-deps --index-url "${TORCH_INDEX}" -c requirements/lock.txt torch
COPY --from=requirements /requirements/worker.txt /tmp/
RUN pip install -c requirements/lock.txt -r /tmp/worker.txt && rm /tmp/worker.txt

FROM worker-cpu-deps AS worker-cpu
COPY --from=wheel /dist /dist
RUN pip install --no-deps /dist/*.whl && rm -rf /dist
USER prefloop
CMD ["prefloop", "worker"]

# PyPI's torch at the locked version is the CUDA build; its nvidia-* wheels are pinned exactly by torch itself.
FROM base AS worker-gpu-deps
RUN pip install -c requirements/lock.txt torch
COPY --from=requirements /requirements/worker.txt /tmp/
RUN pip install -c requirements/lock.txt -r /tmp/worker.txt && rm /tmp/worker.txt

FROM worker-gpu-deps AS worker-gpu
COPY --from=wheel /dist /dist
RUN pip install --no-deps /dist/*.whl && rm -rf /dist
USER prefloop
CMD ["prefloop", "worker"]
