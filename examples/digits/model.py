"""DigitsCNN: a small convolutional classifier for the bundled ``digits`` example.

Input : float32 tensor ``image`` of shape (N, 1, 32, 32) -- grayscale, already normalized
        (see ``metadata.json``: scale to [0, 1], then ``(x - mean) / std``).
Output: float32 tensor ``logits`` of shape (N, 10) -- raw class scores for digits 0..9.

Architecture (every conv is 3x3, stride 1, padding 1, bias-free, followed by BatchNorm + ReLU)::

    conv  1 ->  32  @ 32x32
    conv 32 ->  32  @ 32x32   -> maxpool 2 -> 16x16
    conv 32 ->  64  @ 16x16
    conv 64 ->  64  @ 16x16   -> maxpool 2 ->  8x8
    conv 64 -> 128  @  8x8    -> maxpool 2 ->  4x4
    flatten 2048 -> Linear 256 -> ReLU -> Linear 10

Size (per image, batch 1):
    parameters : 666,282  (0.67 M; all trainable, BatchNorm running stats not counted)
    MACs       : 29,133,312  (29.1 M; conv + linear multiply-accumulates only)
    FLOPs      : 58,266,624  (58.3 MFLOPs, counted as 2 * MACs)

Only plain ``nn.Conv2d`` / ``nn.BatchNorm2d`` / ``nn.ReLU`` / ``nn.MaxPool2d`` / ``nn.Flatten`` /
``nn.Linear`` modules are used (no in-place ops, no functional reshapes), so the model exports to
ONNX and can be structurally pruned without special cases.

This file must stay importable by file path (``importlib.util.spec_from_file_location``): no
relative imports and no dependency other than torch.
"""

from pathlib import Path

import torch
from torch import nn

NUM_CLASSES = 10
INPUT_SHAPE = (1, 1, 32, 32)
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights.pt"


def _conv_block(in_ch: int, out_ch: int) -> list:
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(),
    ]


class DigitsCNN(nn.Module):
    """Conv-BN-ReLU feature extractor plus a two-layer MLP head; returns logits."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            *_conv_block(1, 32),
            *_conv_block(32, 32),
            nn.MaxPool2d(2),  # 32x32 -> 16x16
            *_conv_block(32, 64),
            *_conv_block(64, 64),
            nn.MaxPool2d(2),  # 16x16 -> 8x8
            *_conv_block(64, 128),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * 4 * 4, 256),
            nn.ReLU(),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build() -> nn.Module:
    """Construct DigitsCNN, load the trained ``weights.pt`` next to this file, return it in eval mode."""
    model = DigitsCNN()
    state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return model
