"""FastAPI under uvicorn (httptools + uvloop), one worker per core, ONNX Runtime in each worker.

    BENCH_ONNX_MODEL=model_repository/digits/1/model.onnx uvicorn --workers 2 bench.baselines.fastapi_app:app

Same endpoints and formats as the Flask app. The handlers are `async def` and call ONNX Runtime directly: for a
model that runs in tens of µs that beats a thread-pool hop, and skipping pydantic validation of nested lists is faster
still; both are the fastest way to write this app, not the most common.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request, Response

from bench.baselines.model import Predictor

app = FastAPI()
predictor = Predictor()


@app.post("/predict")
async def predict_json(request: Request) -> Response:
    outputs = predictor.predict(predictor.from_json(json.loads(await request.body())))
    return Response(json.dumps(predictor.to_json(outputs)), media_type="application/json")


@app.post("/predict/binary")
async def predict_binary(request: Request) -> Response:
    outputs = predictor.predict(predictor.from_bytes(await request.body()))
    return Response(predictor.to_bytes(outputs), media_type="application/octet-stream")
