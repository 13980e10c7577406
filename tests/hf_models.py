"""Tiny Hugging Face models built locally (nothing downloaded): a BERT sentiment classifier
fine-tuned for a few seconds on template sentences, and a sentence-transformers style encoder
folder made from its encoder, plus the calibration and labeled evaluation texts."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

SUBJECTS = ["this movie", "the film", "the food", "this book", "the show", "the day", "our trip", "the song"]
VERBS = ["is", "was", "seems", "felt"]
ADVERBS = ["", "really", "very", "so"]
POSITIVE = ["good", "great", "wonderful", "excellent", "nice", "lovely"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "boring", "horrible"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LABELS = {0: "negative", 1: "positive"}
SEQ_LEN = 16
EVAL_ROWS = slice(0, 64)  # of sentences(seed=1): held out from training and calibration


@dataclass
class HFZoo:
    classifier: Path
    encoder: Path
    texts: Path  # calibration, one text per line
    labeled: Path  # evaluation, jsonl with labels (names and indices mixed)
    unlabeled: Path  # evaluation for the encoder, jsonl without labels


def sentences(seed: int) -> list[tuple[str, int]]:
    """Every template sentence with its label, shuffled by `seed`."""
    rows = []
    for subject, verb, adverb in itertools.product(SUBJECTS, VERBS, ADVERBS):
        for label, words in ((1, POSITIVE), (0, NEGATIVE)):
            rows += [(" ".join(filter(None, [subject, verb, adverb, word])), label) for word in words]
    random.Random(seed).shuffle(rows)
    return rows


def write_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    words = sorted({w for phrase in SUBJECTS + VERBS + ADVERBS + POSITIVE + NEGATIVE for w in phrase.split()})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + words) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(folder)
    return tokenizer


def tiny_config(vocab_size: int, **extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=128, max_position_embeddings=128, **extra)


def train_classifier(folder: Path, steps: int = 60):
    """Fine-tune a tiny BertForSequenceClassification to ~100% on the templates (a few seconds)."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = write_tokenizer(folder)
    config = tiny_config(tokenizer.vocab_size, num_labels=2, id2label=LABELS,
                         label2id={v: k for k, v in LABELS.items()})
    model = BertForSequenceClassification(config)
    rows = sentences(seed=1)[EVAL_ROWS.stop:]  # the evaluation rows stay unseen
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend (100x slower on a busy 2-core host)
    try:
        for step in range(steps):
            batch = [rows[(step * 32 + i) % len(rows)] for i in range(32)]
            encoded = tokenizer([t for t, _ in batch], padding="max_length", max_length=SEQ_LEN, return_tensors="pt")
            loss = model(**encoded, labels=torch.tensor([label for _, label in batch])).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(folder)
    return model


def write_sentence_encoder(folder: Path, encoder) -> None:
    """A sentence-transformers layout written by hand: weights at the root, mean pooling."""
    write_tokenizer(folder)
    encoder.save_pretrained(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": encoder.config.hidden_size, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))


def build_zoo(root: Path) -> HFZoo:
    classifier = train_classifier(root / "sentiment-bert")
    write_sentence_encoder(root / "tiny-encoder", classifier.bert)
    rows = sentences(seed=1)
    texts = root / "texts.txt"  # calibration: disjoint from the evaluation rows
    texts.write_text("\n".join(text for text, _ in rows[EVAL_ROWS.stop:EVAL_ROWS.stop + 96]) + "\n")
    labeled = root / "labeled.jsonl"
    rows = rows[EVAL_ROWS]
    labeled.write_text("".join(json.dumps({"text": t, "label": LABELS[y] if i % 2 else y}) + "\n"
                               for i, (t, y) in enumerate(rows)))
    unlabeled = root / "unlabeled.jsonl"
    unlabeled.write_text("".join(json.dumps({"text": t}) + "\n" for t, _ in rows))
    return HFZoo(root / "sentiment-bert", root / "tiny-encoder", texts, labeled, unlabeled)


@pytest.fixture(scope="session")
def hf_zoo(tmp_path_factory) -> HFZoo:
    """Built once per session (a few seconds: most of it is importing transformers)."""
    return build_zoo(tmp_path_factory.mktemp("hf-zoo"))
