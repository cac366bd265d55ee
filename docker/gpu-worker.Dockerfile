# GPU Celery worker serving the `gpu` queue (the exact recount). PyTorch with CUDA comes from the base
# image; every other Python dependency is installed from the same requirements.txt/constraints.txt.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime
ENV AIRFLOW_HOME=/opt/airflow PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 50000 --gid 0 --create-home airflow
COPY --chown=airflow:root requirements.txt constraints.txt pyproject.toml README.md /opt/llmtally/
COPY --chown=airflow:root include /opt/llmtally/include
WORKDIR /opt/llmtally
# Keep the base image's CUDA torch: drop only the torch pin, install everything else as pinned.
RUN grep -v '^torch==' requirements.txt > /tmp/requirements-gpu.txt \
 && grep -v '^torch==' constraints.txt > /tmp/constraints-gpu.txt \
 && sed -i 's#^-c constraints.txt#-c /tmp/constraints-gpu.txt#' /tmp/requirements-gpu.txt \
 && pip install --no-cache-dir -r /tmp/requirements-gpu.txt
USER airflow
WORKDIR /opt/airflow
