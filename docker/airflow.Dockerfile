# Airflow image for the api-server, scheduler, dag-processor, triggerer and CPU Celery workers.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow:root requirements.txt constraints.txt pyproject.toml README.md /opt/llmtally/
COPY --chown=airflow:root include /opt/llmtally/include
WORKDIR /opt/llmtally
# The same pins as everywhere else (requirements.txt + constraints.txt, incl. the CPU torch build).
RUN pip install --no-cache-dir -r requirements.txt
WORKDIR /opt/airflow
