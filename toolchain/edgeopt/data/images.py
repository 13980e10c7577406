"""Image folders: class subfolders (torchvision's ImageFolder convention: sorted folder names are
the label indices) or a flat folder of images (no labels).

Preprocessing comes from the options (`--size/--mean/--std/--layout`) first, then the model's
metadata `preprocessing` block, then the model's input shape: resize (bilinear) to size, scale
0-255 to [0, 1], normalize per channel with mean/std, and lay out as NCHW or NHWC. Pillow is
imported lazily so the rest of edgeopt works without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput, MissingEnvironment
from edgeopt.models.spec import InputSpec

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _files(folder: Path) -> tuple[list[Path], list[int] | None]:
    """(image files, labels or None), in a deterministic order."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        files, labels = [], []
        for index, sub in enumerate(classes):
            for path in sorted(sub.rglob("*")):
                if path.suffix.lower() in EXTENSIONS:
                    files.append(path)
                    labels.append(index)
        return files, labels
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS), None


def _setting(name: str, options, preprocessing: dict):
    value = getattr(options, name, None) if options is not None else None
    return value if value is not None else preprocessing.get(name)


def read_image_folder(folder: Path, inputs: list[InputSpec], preprocessing: dict | None = None,
                      options=None) -> Dataset:
    """Read and preprocess every image under `folder` for the model's single image input."""
    preprocessing = preprocessing or {}
    if len(inputs) != 1 or inputs[0].dtype not in ("float32", "float16") or len(inputs[0].shape) != 4:
        raise BadInput(f"{folder}: an image folder needs a model with one 4-D float input, this one has "
                       f"{', '.join(f'{i.name} {i.dtype} {tuple(i.shape)}' for i in inputs)}")
    spec = inputs[0]
    layout = (_setting("layout", options, preprocessing) or "NCHW").upper()
    if layout not in ("NCHW", "NHWC"):
        raise BadInput(f"--layout {layout}: expected NCHW or NHWC")
    channels = spec.shape[1] if layout == "NCHW" else spec.shape[3]
    size = _setting("size", options, preprocessing) or (spec.shape[2:] if layout == "NCHW" else spec.shape[1:3])
    height, width = (int(size[0]), int(size[1])) if len(size) == 2 else (int(size[0]), int(size[0]))
    fixed = (spec.shape[2:] if layout == "NCHW" else spec.shape[1:3])
    free = {2, 3} if layout == "NCHW" else {1, 2}
    if (height, width) != tuple(fixed) and not free <= set(spec.dynamic_axes):
        raise BadInput(f"--size {height}x{width}: the model's input '{spec.name}' is fixed at {fixed[0]}x{fixed[1]}")
    mean = np.asarray(_setting("mean", options, preprocessing) or [0.0], dtype=np.float32)
    std = np.asarray(_setting("std", options, preprocessing) or [1.0], dtype=np.float32)
    for name, value in (("mean", mean), ("std", std)):
        if value.size not in (1, channels):
            raise BadInput(f"--{name}: {value.size} values for a model with {channels} channels")
    if (std == 0).any():
        raise BadInput("--std: values must not be zero")
    if channels not in (1, 3):
        raise BadInput(f"{folder}: the model's input has {channels} channels; images give 1 or 3 (check --layout)")
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise MissingEnvironment("image folders need Pillow: pip install pillow") from None

    files, labels = _files(folder)
    if not files:
        raise BadInput(f"{folder}: no images found (looked for {', '.join(sorted(EXTENSIONS))})")
    images = np.empty((len(files), height, width, channels), dtype=np.float32)
    for row, path in enumerate(files):
        try:
            from edgeopt.safe_io import check_regular

            check_regular(path, "an image")  # a FIFO named x.png would block Image.open
            with Image.open(path) as image:
                image = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
                pixels = np.asarray(image, dtype=np.float32)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as exc:  # a 30000x30000 PNG is Pillow's bomb guard
            raise BadInput(f"{path}: not a readable image ({type(exc).__name__})") from None
        images[row] = pixels.reshape(height, width, channels)
    images = (images * float(preprocessing.get("scale") or 1 / 255) - mean) / std
    if layout == "NCHW":
        images = images.transpose(0, 3, 1, 2)
    array = np.ascontiguousarray(images, dtype=spec.dtype)
    return Dataset({spec.name: array}, np.asarray(labels, dtype=np.int64) if labels is not None else None, folder)
