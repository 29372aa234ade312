"""The classic tutorial deployment: Flask under gunicorn sync workers (one per core), ONNX Runtime in each worker.

    BENCH_ONNX_MODEL=model_repository/digits/1/model.onnx gunicorn -w 2 bench.baselines.flask_app:app

POST /predict        JSON {"inputs": {name: [sample, ...]}} -> {output name: [[...], ...]}
POST /predict/binary raw samples, input after input        -> raw outputs, output after output
(formats: bench/baselines/model.py)
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

from bench.baselines.model import Predictor

app = Flask(__name__)
predictor = Predictor()


@app.post("/predict")
def predict_json():
    return jsonify(predictor.to_json(predictor.predict(predictor.from_json(request.get_json()))))


@app.post("/predict/binary")
def predict_binary():
    outputs = predictor.predict(predictor.from_bytes(request.get_data()))
    return Response(predictor.to_bytes(outputs), mimetype="application/octet-stream")
