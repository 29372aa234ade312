# The GPU image: NVIDIA's Triton container serving model_repository/ unchanged.
# NGC 26.11 (Triton 2.75.0): it has the fixes of NVIDIA's August 2025 bulletin (CVE-2025-23310/23311, HTTP stack
# overflows, and the rest, all fixed by 25.07) and the later ones, which the pip server of local serving (Triton 2.51,
# NGC 24.10) lacks: docs/serving-security.md. There the real C++ onnxruntime backend (with its TensorRT accelerator
# on GPU instances) serves `backend: "onnxruntime"` configs, and the python backend runs our decode/tokenizer steps.
# Build: make docker-build    Run: MODELPORT_ADMIN_KEY=... make docker-run
FROM nvcr.io/nvidia/tritonserver:26.11-py3

# Only what the python models import, at the versions of requirements-py312.lock: the container's Python is 3.12
# (Ubuntu 24.04), which marks itself externally managed (PEP 668); this image is the models' own environment.
RUN python3 -m pip install --no-cache-dir --break-system-packages pillow==13.0.0 tokenizers==0.23.3 numpy==1.26.4

# Run as uid 1000, the user the Kubernetes manifests name (runAsUser): the NGC image's `triton-server` (Ubuntu 24.04
# images may call uid 1000 `ubuntu`); a user is created only when no account has that uid.
RUN getent passwd 1000 >/dev/null || useradd --create-home --uid 1000 triton-server
COPY --chown=1000:1000 model_repository /models
USER 1000

EXPOSE 8000 8001 8002

HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD python3 -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2).status != 200)"

# Same security, model-control and metrics flags as `python -m serve` (latency summaries feed the dashboard): explicit mode with every model loaded, admin APIs
# behind the modelport-admin-key header. The container must bind 0.0.0.0 to be reachable through published ports;
# publish them on loopback (-p 127.0.0.1:8000:8000) and put the gateway in front as the public edge.
# The key comes from the environment at start; the server refuses to start without one. tritonserver takes it only
# on its command line, which host users can read in /proc unless it is mounted hidepid=2 (docs/serving-security.md).
CMD ["/bin/sh", "-c", "exec tritonserver --model-repository=/models --model-control-mode=explicit --load-model=* --strict-readiness=true --exit-timeout-secs=3 --metrics-config=summary_latencies=true --metrics-config=summary_quantiles=0.5:0.05,0.9:0.01,0.99:0.001 --http-restricted-api=model-repository,shared-memory,trace,logging:modelport-admin-key=${MODELPORT_ADMIN_KEY:?set MODELPORT_ADMIN_KEY to the admin key} --grpc-restricted-protocol=model-repository,shared-memory,trace,logging:modelport-admin-key=${MODELPORT_ADMIN_KEY:?set MODELPORT_ADMIN_KEY to the admin key}"]
