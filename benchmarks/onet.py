"""INT8 on a small three-output regression/classification head: MTCNN's ONet (facenet-pytorch's
pretrained weights), issue 20 item 6.

    pip download facenet-pytorch==2.6.0 --no-deps -d /tmp/fnp && unzip -q /tmp/fnp/*.whl -d /tmp/fnp/src
    PYTHONPATH=toolchain python benchmarks/onet.py --weights /tmp/fnp/src/facenet_pytorch/data/onet.pt

facenet-pytorch 2.6 pins an old torch, so its wheel is only unpacked for `onet.pt` (a state dict);
the ONet below is its architecture (facenet_pytorch/models/mtcnn.py), loaded into this venv's torch.
Outputs: `boxes` (4 box offsets, regression), `landmarks` (10 coordinates, regression), `prob`
(face / not-face softmax, class scores), declared in metadata.json so edgeopt judges every output.

Inputs: 48x48 windows of scikit-image's photographs, MTCNN's preprocessing ((x - 127.5) / 128).
Only one photograph here shows a human face (astronaut), so the face windows are jittered crops
(shift and scale) around it; the rest are windows of the other photographs, which is what ONet
also sees in deployment (the candidates RNet passes on). Calibration and evaluation windows are
disjoint (different random draws; face windows split by jitter draw).
Then `edgeopt build onet.onnx --target cpu --calib calib.npz --eval eval.npz` and, on the
evaluation windows at batch 1: every output's relative L2 and cosine to FP32, face-decision
agreement, and speed interleaved with FP32 (median ratio of --repeats blocks).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FACE = (165, 45, 300, 205)  # astronaut's face (x0, y0, x1, y1), by eye on the 512x512 photograph


def windows(count: int, seed: int, face_share: float = 0.5) -> np.ndarray:
    """NCHW float32 48x48 windows, MTCNN-normalized: `face_share` jittered face crops, the rest
    random square windows of the other photographs."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    astronaut = data.astronaut()
    others = [data.chelsea(), data.coffee(), data.rocket(), data.hubble_deep_field(), data.immunohistochemistry(),
              data.retina(), data.astronaut()]
    crops = []
    for index in range(count):
        if index < int(count * face_share):
            x0, y0, x1, y1 = FACE
            side = (x1 - x0) * rng.uniform(0.85, 1.25)
            cx, cy = (x0 + x1) / 2 + rng.uniform(-0.12, 0.12) * side, (y0 + y1) / 2 + rng.uniform(-0.12, 0.12) * side
            image = astronaut
        else:
            image = others[rng.integers(len(others))][..., :3]
            h, w = image.shape[:2]
            side = rng.uniform(0.1, 0.5) * min(h, w)
            cx, cy = rng.uniform(side / 2, w - side / 2), rng.uniform(side / 2, h - side / 2)
        box = tuple(int(round(v)) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
        crop = Image.fromarray(np.ascontiguousarray(image[..., :3])).crop(box).resize((48, 48), Image.BILINEAR)
        crops.append((np.asarray(crop, dtype=np.float32) - 127.5) * 0.0078125)
    return np.stack(crops).transpose(0, 3, 1, 2).copy()


def onet(weights: Path):
    import torch
    from torch import nn

    class ONet(nn.Module):  # facenet_pytorch.models.mtcnn.ONet, without its package import
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1, self.pool1 = nn.Conv2d(3, 32, 3), nn.PReLU(32), nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2, self.pool2 = nn.Conv2d(32, 64, 3), nn.PReLU(64), nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3, self.pool3 = nn.Conv2d(64, 64, 3), nn.PReLU(64), nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
            self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
            self.dense6_1, self.softmax6_1 = nn.Linear(256, 2), nn.Softmax(dim=1)
            self.dense6_2, self.dense6_3 = nn.Linear(256, 4), nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).contiguous()
            x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
            return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))

    model = ONet().eval()
    model.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="facenet-pytorch's data/onet.pt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calib", type=int, default=256)
    parser.add_argument("--eval", type=int, default=400)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgeopt-onet")
    args = parser.parse_args()

    import torch
    from click.testing import CliRunner
    from edgeopt import bench
    from edgeopt.backends.onnxruntime import session as runtime
    from edgeopt.build_dir import LAYOUT
    from edgeopt.cli import main as cli
    from edgeopt.compare import cosine
    from edgeopt.data.dataset import Dataset

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    model = onet(args.weights)
    path = work / "onet.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 48, 48),), str(path), input_names=["input"],
                      output_names=["boxes", "landmarks", "prob"], dynamic_axes={"input": {0: "batch"}},
                      opset_version=17, dynamo=False)
    (work / "metadata.json").write_text(json.dumps({"task": "regression", "outputs": [
        {"name": "boxes", "kind": "regression"}, {"name": "landmarks", "kind": "regression"},
        {"name": "prob", "kind": "class_scores"}]}))
    np.savez(work / "calib.npz", input=windows(args.calib, 1))
    evaluation = windows(args.eval, 2)
    np.savez(work / "eval.npz", input=evaluation)
    started = time.perf_counter()
    result = CliRunner().invoke(cli, ["build", str(path), "--target", "cpu", "--calib", str(work / "calib.npz"),
                                      "--eval", str(work / "eval.npz"), "--out", str(work / "build"), "--force",
                                      "--json", "--no-cache"])
    seconds = time.perf_counter() - started
    if result.exit_code not in (0, 1):
        raise SystemExit(f"edgeopt build: exit {result.exit_code}: {result.stderr.strip()[-2000:]}")
    doc = json.loads(result.stdout)
    (work / "build.json").write_text(json.dumps(doc, indent=1))
    out = work / "build"
    fp32, int8 = out / LAYOUT.fp32_onnx, out / LAYOUT.ort_deployable
    data = Dataset({"input": evaluation}, None, "evaluation windows")
    ref = runtime.run_all(runtime.session(fp32, threads=args.threads), data)
    got = runtime.run_all(runtime.session(int8, threads=args.threads), data)
    blocks = [bench.measure_onnx({"FP32": fp32, "INT8": int8}, data, args.threads, duration_s=args.seconds)
              for _ in range(args.repeats)]
    ratios = sorted(b["FP32"].p50 / b["INT8"].p50 for b in blocks)
    quant = doc.get("quantization") or {}
    print(f"ONet: calibration {args.calib}, evaluation {args.eval} windows (half face crops), threads {args.threads}, "
          f"batch 1; build {seconds:.0f} s; chose {quant.get('choice')}")
    fallback = quant.get("fallback") or {}
    print("fallback: " + ", ".join(f"{row['node']} (added error {row.get('added_error')}, drop with it and above "
                                   f"float {row.get('drop_after')})" for row in fallback.get("layers", [])[:8]))
    print(f"float layers: {fallback.get('float_layers')}; gates: " + "; ".join(
        f"{g['name']} {g['value']} ({'pass' if g['passed'] else 'FAIL'})" for g in doc.get("gates", [])))
    face = ref[2][:, 1] > 0.5
    for name, a, b in zip(("boxes", "landmarks", "prob"), ref, got):
        error = np.linalg.norm(b - a, axis=1) / np.maximum(np.linalg.norm(a, axis=1), 1e-12)
        print(f"| {name} | relative L2 mean {error.mean():.4f} (faces {error[face].mean():.4f}) | cosine mean "
              f"{cosine(a, b).mean():.4f} |")
    print(f"face decisions kept: {((got[2][:, 1] > 0.5) == face).mean() * 100:.1f}% ({face.sum()} FP32 faces); "
          f"speedup p50 median of {args.repeats}: {ratios[len(ratios) // 2]:.2f}x (all {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    sys.exit(main())
