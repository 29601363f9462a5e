# syntax=docker/dockerfile:1
# One image for every Runpack process: the command picks the role
# (api, worker, beat, flower, db upgrade); see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system runpack \
    && useradd --system --gid runpack --create-home --home-dir /home/runpack runpack

WORKDIR /src
COPY pyproject.toml README.md ./
COPY runpack_api ./runpack_api
COPY runpack_tasks ./runpack_tasks
COPY runner_plugins ./runner_plugins
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info

# Run as the unprivileged user, from a directory it owns (the embedded defaults,
# runpack.db and runpack-broker/, would be written here; compose uses PostgreSQL + Redis).
USER runpack
WORKDIR /home/runpack

EXPOSE 8000

# Only meaningful for the API role on port 8000: other roles override or disable it
# (docker-compose.yml does). urlopen raises on a refused connection and on a 503.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

ENTRYPOINT ["runpack"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
