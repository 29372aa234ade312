from export.train import digits

TENSORRT_FRIENDLY_LAYERS = {"InputLayer", "Rescaling", "Conv2D", "MaxPooling2D", "Flatten", "Dense"}


def test_digits_model_takes_8x8x1_float_images_and_returns_10_probabilities():
    model = digits.build_model()
    assert tuple(model.inputs[0].shape) == (None, 8, 8, 1)
    assert model.inputs[0].dtype == "float32"
    assert tuple(model.outputs[0].shape) == (None, 10)


def test_digits_model_uses_only_tensorrt_friendly_layers_and_rescales_internally():
    model = digits.build_model()
    kinds = [type(layer).__name__ for layer in model.layers]
    assert set(kinds) <= TENSORRT_FRIENDLY_LAYERS
    assert kinds[1] == "Rescaling"
    assert model.layers[-1].get_config()["activation"] == "softmax"
