"""The classic tutorial deployment: Flask under gunicorn sync workers (one per core), ONNX Runtime in each worker.

    BENCH_ONNX_MODEL=model_repository/digits/1/model.onnx gunicorn -w 2 bench.baselines.flask_app:app

POST /predict        JSON {"inputs": [sample, ...]} -> {"probabilities": [[...], ...]}
POST /predict/binary raw float32 samples            -> raw float32 probabilities
"""

from __future__ import annotations

import numpy as np
from flask import Flask, Response, jsonify, request

from bench.baselines.model import Predictor

app = Flask(__name__)
predictor = Predictor()


@app.post("/predict")
def predict_json():
    batch = np.asarray(request.get_json()["inputs"], dtype=np.float32)
    return jsonify(probabilities=predictor.predict(batch).tolist())


@app.post("/predict/binary")
def predict_binary():
    output = predictor.predict(predictor.from_bytes(request.get_data()))
    return Response(output.astype("<f4").tobytes(), mimetype="application/octet-stream")
