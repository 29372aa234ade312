"""Small PyTorch and Hugging Face sources written the way a user's would be, and their models.toml entries.

`tokenizer_files` needs only `tokenizers` (a base dependency); the others need the torch extra and import it inside.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from export.train import sentiment_bert
from tests import specs

LABELS = ("negative", "positive")
MAX_LENGTH = 16
TEXTS = ["a gorgeous , witty and moving film", "dull , lifeless and boring", "the best film of the year",
         "a waste of two hours", "funny and touching", "an utter mess", "smart , sharp and sweet", "tedious",
         "it never finds its footing , but the cast is wonderful and the ending lands",
         "Überraschend gut: a café-set comedy"]
TOKENIZER_CONFIG = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                    "mask_token": "[MASK]", "model_max_length": 64}


def tokenizer_files(directory: Path, texts: list[str] = TEXTS) -> Path:
    """tokenizer.json and tokenizer_config.json as save_pretrained writes them for a BERT WordPiece tokenizer."""
    directory.mkdir(parents=True, exist_ok=True)
    sentiment_bert.wordpiece(texts).save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    return directory


def hf_checkpoint(directory: Path, seed: int = 0, labels: tuple[str, ...] = LABELS) -> Path:
    """A tiny BertForSequenceClassification with random weights and its tokenizer, saved with save_pretrained;
    beside it heldout.npz (its own predictions as labels, and the raw texts) and calibration.npz."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    checkpoint = directory / "checkpoint"
    sentiment_bert.train_tokenizer(TEXTS).save_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=MAX_LENGTH, num_labels=len(labels),
                        initializer_range=0.5,  # random weights this large give outputs far from uniform
                        id2label=dict(enumerate(labels)), label2id={x: i for i, x in enumerate(labels)})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config).eval()
    model.save_pretrained(checkpoint)
    texts = TEXTS * 3
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="np")
    arrays = {n: batch[n].astype(np.int64) for n in ("input_ids", "attention_mask")}
    with torch.no_grad():
        logits = model(**{n: torch.from_numpy(a) for n, a in arrays.items()}).logits.numpy()
    np.savez(directory / "heldout.npz", **arrays, y=logits.argmax(axis=1), text=np.array(texts))
    np.savez(directory / "calibration.npz", **arrays)
    (directory / "samples.txt").write_text("".join(f"{t}\n" for t in TEXTS), encoding="utf-8")
    return checkpoint


def hf_spec(directory: Path, *, labels: tuple[str, ...] = LABELS, **fields) -> dict:
    """The models.toml entry a user writes for their checkpoint: the ONNX model and a [model.text] table."""
    entry = {"source": directory / "checkpoint", "heldout": directory / "heldout.npz",
             "calibration": directory / "calibration.npz", "variants": ["fp32", "fp16"], "preferred_batch_size": [4, 8],
             "text": {"name": "review", "samples": directory / "samples.txt"}, **fields}
    return specs.model("review_bert", inputs=[specs.tensor(n, [MAX_LENGTH], "TYPE_INT64")
                                              for n in ("input_ids", "attention_mask")],
                       outputs=[specs.tensor("probabilities", [len(labels)], labels=labels)], **entry)


def torch_module_files(directory: Path) -> dict[str, Path]:
    """A plain torch.nn.Module (2 inputs, Linear + ReLU + Linear) saved as a torch.export ExportedProgram with a
    dynamic batch (net.pt2), the same with a static batch (static.pt2), and as TorchScript (net.ts); heldout.npz
    labels are its own predictions."""
    import torch

    class Scorer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = torch.nn.Linear(5, 8)
            self.out = torch.nn.Linear(8, 3)

        def forward(self, features, bias):
            return self.out(torch.relu(self.hidden(features))) + bias

    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = Scorer().eval()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 5)).astype(np.float32)
    bias = rng.normal(size=(40, 3)).astype(np.float32)
    example = (torch.from_numpy(features[:2]), torch.from_numpy(bias[:2]))
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(net, example, dynamic_shapes={"features": {0: batch}, "bias": {0: batch}}),
                      str(directory / "net.pt2"))
    torch.export.save(torch.export.export(net, example), str(directory / "static.pt2"))
    torch.jit.save(torch.jit.trace(net, example), str(directory / "net.ts"))
    with torch.no_grad():
        scores = net(torch.from_numpy(features), torch.from_numpy(bias)).numpy()
    np.savez(directory / "heldout.npz", features=features, bias=bias, y=scores.argmax(axis=1))
    return {"pt2": directory / "net.pt2", "static": directory / "static.pt2", "torchscript": directory / "net.ts",
            "heldout": directory / "heldout.npz"}


def module_spec(source: Path, heldout: Path, activation: str | None = "softmax", **fields) -> dict:
    return specs.model("scorer", source=source, heldout=heldout, activation=activation,
                       inputs=[specs.tensor("features", [5]), specs.tensor("bias", [3])],
                       outputs=[specs.tensor("scores", [3], labels=["low", "mid", "high"])], **fields)
