"""The two extra benchmark models for benchmarks/quantize_vs_peers.py, built locally (no downloads).

    python benchmarks/models/build_models.py [--out DIR]

- `dwcnn`: a MobileNetV2-style depthwise-separable CNN (inverted residuals, ReLU6) trained on
  scikit-learn's digits at 32x32 on the samples that are in neither calibration/digits_calib.npz
  nor calibration/digits_eval.npz (checked by content hash), so it is calibrated and evaluated on
  the same committed splits as the bundled example. Its weights are committed beside this file
  (`dwcnn.pt`, float16 state_dict) because training takes a few minutes; they are reused if present.
- `encoder`: a BERT-style encoder from transformers' BertConfig (6 layers, hidden 384, 12 heads,
  sequence 128) with seeded random weights; calibration/evaluation token ids are random with
  varied padding, so the attention-mask path is exercised.

Each model is written as `<out>/<name>/model.fp32.onnx` with `calib.npz` and `eval.npz`.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MEAN, STD = 0.3048, 0.3233  # the bundled example's normalization (examples/digits/metadata.json)
SEQ, HIDDEN, LAYERS, HEADS = 128, 384, 6, 12


def _inverted_residual(cin: int, cout: int, stride: int, expand: int) -> nn.Module:
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            mid = cin * expand
            layers = [] if expand == 1 else [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6()]
            layers += [nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
                       nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    return Block()


class DWCNN(nn.Module):
    """MobileNetV2 layout (width 1.0, strides adapted to 32x32 inputs): ~1.1 M params, ~25 M MACs."""

    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 1), (6, 96, 3, 2), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 10):
        super().__init__()
        layers = [nn.Conv2d(1, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()]
        cin = 32
        for expand, cout, repeats, stride in self.SETTINGS:
            for index in range(repeats):
                layers.append(_inverted_residual(cin, cout, stride if index == 0 else 1, expand))
                cin = cout
        layers += [nn.Conv2d(cin, 640, 1, bias=False), nn.BatchNorm2d(640), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(640, num_classes)

    def forward(self, image):
        return self.classifier(self.features(image).mean(dim=(2, 3)))


def _hashes(x: np.ndarray) -> set[str]:
    return {hashlib.sha256(np.ascontiguousarray(s).tobytes()).hexdigest() for s in x}


def _digits_train() -> tuple[torch.Tensor, torch.Tensor]:
    """Every digits sample not in the committed calibration/evaluation splits, preprocessed alike."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = ((F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False) - MEAN) / STD).numpy()
    held_out = set()
    for split in ("digits_calib", "digits_eval"):
        held_out |= _hashes(np.load(ROOT / "calibration" / f"{split}.npz")["image"])
    keep = [i for i, h in enumerate(hashlib.sha256(np.ascontiguousarray(s).tobytes()).hexdigest() for s in x)
            if h not in held_out]
    return torch.from_numpy(x[keep]), torch.from_numpy(digits.target[keep].astype(np.int64))


def train_dwcnn(epochs: int = 30) -> DWCNN:
    torch.manual_seed(0)
    model = DWCNN()
    x, y = _digits_train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=epochs * ((len(x) + 63) // 64))
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x), generator=generator).split(64):
            shift = torch.randint(-2, 3, (2,), generator=generator).tolist()
            images = torch.roll(x[batch], shifts=shift, dims=(2, 3))  # light augmentation
            loss = F.cross_entropy(model(images), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def build_dwcnn(out: Path) -> None:
    weights = HERE / "dwcnn.pt"
    model = DWCNN()
    if weights.exists():
        model.load_state_dict({k: v.float() for k, v in torch.load(weights).items()})
    else:
        model = train_dwcnn()
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, weights)
        model.load_state_dict({k: v.float() for k, v in torch.load(weights).items()})
    model.eval()
    folder = out / "dwcnn"
    folder.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(1, 1, 32, 32),), str(folder / "model.fp32.onnx"), input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}}, opset_version=17, dynamo=False)
    for split in ("calib", "eval"):
        data = np.load(ROOT / "calibration" / f"digits_{split}.npz")
        np.savez(folder / f"{split}.npz", image=data["image"], labels=data["labels"])
    with torch.no_grad():
        evaluation = np.load(folder / "eval.npz")
        top1 = (model(torch.from_numpy(evaluation["image"])).argmax(1).numpy() == evaluation["labels"]).mean()
    print(f"dwcnn: {sum(p.numel() for p in model.parameters())} params, eval top-1 {top1:.4f}")


def _token_batch(count: int, seed: int, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab, size=(count, SEQ), dtype=np.int64)
    ids[:, 0] = 101  # [CLS]
    lengths = rng.integers(16, SEQ + 1, size=count)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
    ids[np.arange(count), lengths - 1] = 102  # [SEP]
    ids = np.where(mask == 1, ids, 0)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def build_encoder(out: Path) -> None:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                        intermediate_size=4 * HIDDEN, max_position_embeddings=512)
    model = BertModel(config, add_pooling_layer=False).eval()
    folder = out / "encoder"
    folder.mkdir(parents=True, exist_ok=True)
    example = {k: torch.from_numpy(v) for k, v in _token_batch(1, 0, config.vocab_size).items()}
    axes = {name: {0: "batch", 1: "sequence"} for name in example}
    torch.onnx.export(model, (example["input_ids"], example["attention_mask"], example["token_type_ids"]),
                      str(folder / "model.fp32.onnx"), input_names=list(example), output_names=["last_hidden_state"],
                      dynamic_axes={**axes, "last_hidden_state": {0: "batch", 1: "sequence"}}, opset_version=17,
                      dynamo=False)
    np.savez(folder / "calib.npz", **_token_batch(256, 1, config.vocab_size))
    np.savez(folder / "eval.npz", **_token_batch(200, 2, config.vocab_size))
    print(f"encoder: {sum(p.numel() for p in model.parameters())} params")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/edgeopt-bench-models"))
    parser.add_argument("--only", choices=["dwcnn", "encoder"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.only in (None, "dwcnn"):
        build_dwcnn(args.out)
    if args.only in (None, "encoder"):
        build_encoder(args.out)


if __name__ == "__main__":
    main()
