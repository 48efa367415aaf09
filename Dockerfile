# Guichet's image: the locked dependencies, the code, and the sample configuration
# (mount your own over /app/config).
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY bot/ bot/
COPY channels/ channels/
COPY nlu/ nlu/
COPY triage/ triage/
COPY handoff/ handoff/
COPY config/ config/
RUN pip install --no-cache-dir --no-deps .
ENV GUICHET_HTTP_HOST=0.0.0.0 GUICHET_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
CMD ["guichet", "run", "--config", "/app/config"]
