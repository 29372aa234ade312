"""FastAPI under uvicorn (httptools + uvloop), one worker per core, ONNX Runtime in each worker.

    BENCH_ONNX_MODEL=model_repository/digits/1/model.onnx uvicorn --workers 2 bench.baselines.fastapi_app:app

Same endpoints as the Flask app. The handlers are `async def` and call ONNX Runtime directly: for a model that runs
in tens of µs that beats a thread-pool hop, and skipping pydantic validation of nested lists is faster still; both
are the fastest way to write this app, not the most common.
"""

from __future__ import annotations

import json

import numpy as np
from fastapi import FastAPI, Request, Response

from bench.baselines.model import Predictor

app = FastAPI()
predictor = Predictor()


@app.post("/predict")
async def predict_json(request: Request) -> Response:
    batch = np.asarray(json.loads(await request.body())["inputs"], dtype=np.float32)
    body = json.dumps({"probabilities": predictor.predict(batch).tolist()})
    return Response(body, media_type="application/json")


@app.post("/predict/binary")
async def predict_binary(request: Request) -> Response:
    output = predictor.predict(predictor.from_bytes(await request.body()))
    return Response(output.astype("<f4").tobytes(), media_type="application/octet-stream")
