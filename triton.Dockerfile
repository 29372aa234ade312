# The GPU image: NVIDIA's Triton container serving model_repository/ unchanged.
# Triton 2.51.0 is NGC release 24.10, the same server version as the nvidia-pytriton wheel used for local serving;
# there the real C++ onnxruntime backend (with its TensorRT accelerator on GPU instances) serves
# `backend: "onnxruntime"` configs, and the python backend runs our decode/tokenizer steps.
# Build: make docker-build    Run: MODELPORT_ADMIN_KEY=... make docker-run
FROM nvcr.io/nvidia/tritonserver:24.10-py3

# Only what the python models import. The container's Python is 3.10: pillow 13 has no 3.10 wheels, so 12.3.0.
RUN python3 -m pip install --no-cache-dir pillow==12.3.0 tokenizers==0.23.3 numpy==1.26.4

# Run as an unprivileged user (the NGC image ships `triton-server`; create it if a future tag does not).
RUN id -u triton-server >/dev/null 2>&1 || useradd --create-home --uid 1000 triton-server
COPY --chown=triton-server:triton-server model_repository /models
USER triton-server

EXPOSE 8000 8001 8002

HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD python3 -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2).status != 200)"

# Same security, model-control and metrics flags as `python -m serve` (latency summaries feed the dashboard): explicit mode with every model loaded, admin APIs
# behind the modelport-admin-key header. The container must bind 0.0.0.0 to be reachable through published ports;
# publish them on loopback (-p 127.0.0.1:8000:8000) unless serving other hosts is intended.
# The key comes from the environment at start; the server refuses to start without one.
CMD ["/bin/sh", "-c", "exec tritonserver --model-repository=/models --model-control-mode=explicit --load-model=* --strict-readiness=true --exit-timeout-secs=3 --metrics-config=summary_latencies=true --metrics-config=summary_quantiles=0.5:0.05,0.9:0.01,0.99:0.001 --http-restricted-api=model-repository,shared-memory,trace,logging:modelport-admin-key=${MODELPORT_ADMIN_KEY:?set MODELPORT_ADMIN_KEY to the admin key} --grpc-restricted-protocol=model-repository,shared-memory,trace,logging:modelport-admin-key=${MODELPORT_ADMIN_KEY}"]
