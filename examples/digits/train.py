"""Train the bundled DigitsCNN example on scikit-learn's digits data set (deterministic, CPU).

    python examples/digits/train.py

Writes, relative to the repository root:
    examples/digits/weights.pt        state_dict of DigitsCNN (float32 parameters)
    examples/digits/metadata.json     I/O spec, preprocessing, labels, params, MACs, eval top-1
    calibration/digits_calib.npz      256 images for INT8 calibration  (keys: image, labels)
    calibration/digits_eval.npz       500 images for accuracy checks   (keys: image, labels)

Data: ``sklearn.datasets.load_digits()`` (1797 8x8 images, values 0..16; ships with scikit-learn,
nothing is downloaded). Preprocessing: /16 -> [0, 1], bilinear upsample to 32x32
(align_corners=False), then (x - mean) / std with mean/std measured on the training split and
rounded to 4 decimals (the rounded values are the ones applied and stored). The three splits are
stratified by class and disjoint (checked by per-sample content hash).
"""

import hashlib
import importlib.util
import io
import json
import random
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 0
N_EVAL = 500
N_CALIB = 256
SIZE = 32
EPOCHS = 20
BATCH_SIZE = 64
LR = 3e-3
WEIGHT_DECAY = 5e-4
# Light augmentation, applied in [0, 1] space (background = 0) before normalization.
MAX_SHIFT_PX = 2.0
MAX_ROT_DEG = 8.0
SCALE_RANGE = (0.92, 1.08)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CALIB_DIR = ROOT / "calibration"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)


def load_model_module():
    spec = importlib.util.spec_from_file_location("digits_model", HERE / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upsample(images_0_16: np.ndarray) -> torch.Tensor:
    """(N, 8, 8) values 0..16 -> (N, 1, 32, 32) float32 in [0, 1]."""
    x = torch.from_numpy(images_0_16.astype(np.float32) / 16.0).unsqueeze(1)
    return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random small affine (shift +-2 px, rotation, scale) on a [0, 1] batch; zero padding."""
    n = x.shape[0]
    u = lambda: torch.rand(n, generator=gen) * 2 - 1  # noqa: E731  uniform in [-1, 1]
    angle = u() * MAX_ROT_DEG * np.pi / 180
    lo, hi = SCALE_RANGE
    scale = lo + (hi - lo) * torch.rand(n, generator=gen)
    px = 2.0 / SIZE  # one pixel in affine_grid's normalized coordinates (align_corners=False)
    tx, ty = u() * MAX_SHIFT_PX * px, u() * MAX_SHIFT_PX * px
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def count_macs(model: nn.Module) -> int:
    """Multiply-accumulates of Conv2d and Linear layers for one 1x1x32x32 image."""
    total = 0

    def conv_hook(m, inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.numel() * k

    def linear_hook(m, inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, SIZE, SIZE))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), 256):
        correct += (model(x[i : i + 256]).argmax(1) == y[i : i + 256]).sum().item()
    return correct / len(x)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like np.savez_compressed, but with fixed zip timestamps so reruns are byte-identical."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def sample_hashes(x: np.ndarray) -> set:
    return {hashlib.sha256(np.ascontiguousarray(s).tobytes()).hexdigest() for s in x}


def main() -> None:
    t_start = time.perf_counter()
    seed_everything(SEED)

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    idx = np.arange(len(labels))
    rest, eval_idx = train_test_split(
        idx, test_size=N_EVAL, stratify=labels, random_state=SEED
    )
    train_idx, calib_idx = train_test_split(
        rest, test_size=N_CALIB, stratify=labels[rest], random_state=SEED
    )
    train_idx, calib_idx, eval_idx = np.sort(train_idx), np.sort(calib_idx), np.sort(eval_idx)
    assert not (set(train_idx) & set(calib_idx) or set(train_idx) & set(eval_idx)
                or set(calib_idx) & set(eval_idx))

    images01 = upsample(digits.images)  # (1797, 1, 32, 32) in [0, 1]
    train01 = images01[train_idx]
    mean = round(train01.mean().item(), 4)
    std = round(train01.std().item(), 4)
    normalize = lambda t: (t - mean) / std  # noqa: E731

    x_train01, y_train = train01, torch.from_numpy(labels[train_idx])
    x_calib = normalize(images01[calib_idx]).numpy().astype(np.float32)
    x_eval = normalize(images01[eval_idx]).numpy().astype(np.float32)
    y_calib, y_eval = labels[calib_idx], labels[eval_idx]

    h_train = sample_hashes(normalize(x_train01).numpy().astype(np.float32))
    h_calib, h_eval = sample_hashes(x_calib), sample_hashes(x_eval)
    assert len(h_train) == len(train_idx) and len(h_calib) == N_CALIB and len(h_eval) == N_EVAL
    assert not (h_train & h_calib or h_train & h_eval or h_calib & h_eval), "splits overlap"

    save_npz(CALIB_DIR / "digits_calib.npz", image=x_calib, labels=y_calib)
    save_npz(CALIB_DIR / "digits_eval.npz", image=x_eval, labels=y_eval)

    # ---- model -------------------------------------------------------------------------------
    mod = load_model_module()
    model = mod.DigitsCNN()
    n_params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model)

    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = (len(x_train01) + BATCH_SIZE - 1) // BATCH_SIZE
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=LR, epochs=EPOCHS, steps_per_epoch=steps_per_epoch, pct_start=0.2
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    x_eval_t, y_eval_t = torch.from_numpy(x_eval), torch.from_numpy(y_eval)

    print(f"train {len(train_idx)} / calibration {N_CALIB} / evaluation {N_EVAL} images")
    print(f"normalization: mean={mean} std={std}")
    t_train = time.perf_counter()
    for epoch in range(1, EPOCHS + 1):
        model.train()
        perm = torch.randperm(len(x_train01), generator=gen)
        total_loss = 0.0
        for i in range(0, len(perm), BATCH_SIZE):
            b = perm[i : i + BATCH_SIZE]
            xb = normalize(augment(x_train01[b], gen))
            loss = loss_fn(model(xb), y_train[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(b)
        if epoch % 5 == 0 or epoch == EPOCHS:
            print(
                f"epoch {epoch:3d}  loss {total_loss / len(perm):.4f}  "
                f"eval top-1 {accuracy(model, x_eval_t, y_eval_t):.4f}  "
                f"({time.perf_counter() - t_train:.0f}s)"
            )
    train_seconds = time.perf_counter() - t_train

    model.eval()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, HERE / "weights.pt")

    # Re-evaluate through the shipped path (build() + the stored eval npz) so the number in
    # metadata.json is exactly what a consumer of these files reproduces.
    built = mod.build()
    with np.load(CALIB_DIR / "digits_eval.npz") as data:
        eval_top1 = accuracy(built, torch.from_numpy(data["image"]), torch.from_numpy(data["labels"]))
    train_top1 = accuracy(built, normalize(x_train01), y_train)
    calib_top1 = accuracy(built, torch.from_numpy(x_calib), torch.from_numpy(y_calib))

    metadata = {
        "name": "digits-cnn",
        "task": "classification",
        "inputs": [
            {
                "name": "image",
                "dtype": "float32",
                "shape": [1, 1, SIZE, SIZE],
                "dynamic_axes": {"0": "batch"},
            }
        ],
        "outputs": [{"name": "logits"}],
        "preprocessing": {
            "size": [SIZE, SIZE],
            "mean": [mean],
            "std": [std],
            "layout": "NCHW",
            "color": "grayscale",
            "scale": 1 / 255,
            "note": (
                "Raw 0-255 grayscale images are multiplied by 'scale' (1/255) to reach [0, 1], "
                "resized to 'size' (bilinear), then normalized as (x - mean) / std. In training, "
                "sklearn's 8x8 digits (values 0..16) were scaled to [0, 1] by /16 instead, "
                "upsampled to 32x32 (bilinear, align_corners=False), then normalized with the "
                "same mean/std (measured on the training split, rounded to 4 decimals). The "
                "calibration/digits_*.npz arrays are already fully preprocessed."
            ),
        },
        "labels": [str(i) for i in range(10)],
        "params": int(n_params),
        "macs": int(macs),
        "eval_top1": round(eval_top1, 4),
    }
    (HERE / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")

    print(f"parameters: {n_params:,}")
    print(f"MACs: {macs:,}  ({2 * macs / 1e6:.2f} MFLOPs)")
    print(f"train top-1: {train_top1:.4f}  calibration top-1: {calib_top1:.4f}  "
          f"eval top-1: {eval_top1:.4f}")
    print(f"training time: {train_seconds:.1f}s  total: {time.perf_counter() - t_start:.1f}s")


if __name__ == "__main__":
    main()
