"""`.npz` data: one array per model input name, first axis = sample; optional `labels`."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.models.spec import InputSpec

LABELS = "labels"


def _check_headers(path: Path) -> None:
    """Each array's header may not claim more bytes than its member holds (a header claiming
    petabytes ended as "out of memory"); read from the zip without loading any array."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as handle:
                    version = np.lib.format.read_magic(handle)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(handle, max_header_size=10000)
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if claimed > info.file_size:
                    raise BadInput(f"{path}: array '{info.filename[:-4]}' claims {claimed} bytes but holds "
                                   f"{info.file_size}; not a valid .npz")
    except BadInput:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, TypeError, MemoryError) as exc:
        raise BadInput(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None


def read_npz(path: Path, inputs: list[InputSpec]) -> Dataset:
    """Read and check against the model's inputs: names, per-sample shape, dtype, finiteness."""
    from edgeopt.safe_io import check_regular

    check_regular(path, "the .npz data")
    _check_headers(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
        raise BadInput(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    expected = [spec.name for spec in inputs]
    if len(inputs) == 1 and inputs[0].name not in arrays:
        others = [key for key in arrays if key != LABELS]
        if len(others) == 1:  # a single unnamed array: accept it for the single input
            arrays[inputs[0].name] = arrays.pop(others[0])
    missing = [name for name in expected if name not in arrays]
    if missing:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise BadInput(f"{path}: no array for model input '{missing[0]}' (found: {found})")
    unknown = sorted(set(arrays) - set(expected) - {LABELS})
    if unknown:
        raise BadInput(f"{path}: array '{unknown[0]}' matches no model input (inputs: {', '.join(expected)})")
    data = {spec.name: _checked(path, spec, arrays[spec.name]) for spec in inputs}
    counts = {len(array) for array in data.values()}
    labels = arrays.get(LABELS)
    if labels is not None:
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise BadInput(f"{path}: 'labels' must be a 1-D integer array, got {labels.dtype} {labels.shape}")
        counts.add(len(labels))
    if len(counts) != 1:
        raise BadInput(f"{path}: arrays have different sample counts {sorted(counts)}")
    if counts == {0}:
        raise BadInput(f"{path}: holds no samples")
    return Dataset(data, labels, Path(path))


def _checked(path: Path, spec: InputSpec, array: np.ndarray) -> np.ndarray:
    expected = list(spec.shape[1:])
    actual = list(array.shape[1:])
    fixed = [i for i in range(len(expected)) if (i + 1) not in spec.dynamic_axes]
    if len(actual) != len(expected) or any(actual[i] != expected[i] for i in fixed):
        raise BadInput(
            f"{path}: '{spec.name}' has per-sample shape {tuple(actual)}, the model expects {tuple(expected)}"
        )
    if np.dtype(spec.dtype).kind != array.dtype.kind:
        raise BadInput(f"{path}: '{spec.name}' has dtype {array.dtype}, the model expects {spec.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise BadInput(f"{path}: '{spec.name}' contains {bad} NaN or infinite values")
    return array.astype(spec.dtype, copy=False)
