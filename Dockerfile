# The platform image for the kind backend: every mlops-drill app, the device plugin and the fake
# nvidia-smi. The embedded backend runs the same modules as local processes instead.
#   docker build -t mlops-drill/platform:dev .   (then: kind load docker-image, done by the kind backend)
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY mlops_drill mlops_drill
COPY cluster cluster
COPY injector injector
COPY grader grader
COPY scenarios scenarios
COPY mlplatform mlplatform
RUN pip install --no-cache-dir . \
 && mkdir -p /opt/mlops-drill/bin \
 && ln -s "$(command -v mlops-drill-nvidia-smi)" /opt/mlops-drill/bin/nvidia-smi \
 && python -c "from mlops_drill.mlplatform.artifacts import ensure_artifacts; ensure_artifacts()"
ENV PYTHONUNBUFFERED=1
EXPOSE 8080
