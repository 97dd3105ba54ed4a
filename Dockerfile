# The platform image for the kind backend: every mlops-drill app, the device plugin and the fake
# nvidia-smi. The embedded backend runs the same modules as local processes instead.
#   docker build -t mlops-drill/platform:dev .   (then: kind load docker-image, done by the kind backend)
# BASE is any Debian-like image with python3 and its venv module. Where no registry answers,
# `mlops-drill toolchain build --backend kind` passes a Debian rootfs made with debootstrap, and puts
# the dependencies' wheels (fetched on the host from PyPI) in wheels/ so nothing is downloaded here.
ARG BASE=python:3.11-slim
FROM ${BASE}
WORKDIR /src
RUN python3 -m venv /opt/venv
# MLOPS_DRILL_CACHE: the model artifacts made at build time, where the non-root user finds them.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MLOPS_DRILL_CACHE=/opt/mlops-drill/cache
# wheel[s] matches nothing in a plain checkout: then pip installs from PyPI as usual.
COPY pyproject.toml wheel[s] ./
# The dependencies first, in a layer of their own: a code change then rebuilds (and loads into the
# kind nodes) only the small layer below, not the ~300 MB of dependencies.
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && if ls ./*.whl >/dev/null 2>&1; then pip install --no-cache-dir --no-index --find-links . -r /tmp/requirements.txt; \
    else pip install --no-cache-dir -r /tmp/requirements.txt; fi
COPY setup.py README.md ./
# Only what runs in pods: the scenario catalogue, the fault injector and the grader stay out of the
# image, since anyone with `kubectl exec` into a pod would read the answer key there.
COPY mlops_drill mlops_drill
COPY cluster cluster
COPY mlplatform mlplatform
RUN if ls ./*.whl >/dev/null 2>&1; then pip install --no-cache-dir --no-deps --no-index --find-links . . ; \
    else pip install --no-cache-dir --no-deps . ; fi \
 && cd / && rm -rf /src \
 && mkdir -p /opt/mlops-drill/bin \
 && ln -s "$(command -v mlops-drill-nvidia-smi)" /opt/mlops-drill/bin/nvidia-smi \
 && python -c "from mlops_drill.mlplatform.artifacts import ensure_artifacts; ensure_artifacts()" \
 && chmod -R a+rX /opt/mlops-drill/cache \
 && useradd --uid 1000 --user-group --home-dir /tmp --no-create-home --shell /bin/sh app
# Containers run as a user, not root, unless their pod asks for root (the device plugin does).
USER 1000
# not /src: a source folder in the working directory would shadow the installed mlops_drill package
WORKDIR /
EXPOSE 8080
