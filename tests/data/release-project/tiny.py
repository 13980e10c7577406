"""The second model of the release tests: a ridge-regression linear classifier of the digits data,
small (10k parameters), deterministic, fitted when loaded (no weights file)."""
from pathlib import Path

import numpy as np
import torch
from torch import nn

DATA = Path(__file__).with_name("calib.npz")  # tests/test_release.py copies the digits calibration data here


def build() -> nn.Module:
    data = np.load(DATA)
    x = torch.from_numpy(data["image"].reshape(len(data["image"]), -1)).double()
    x = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    y = torch.nn.functional.one_hot(torch.from_numpy(data["labels"]).long(), 10).double()
    w = torch.linalg.solve(x.T @ x + 10.0 * torch.eye(x.shape[1], dtype=torch.float64), x.T @ y)
    model = nn.Sequential(nn.Flatten(), nn.Linear(1024, 10))
    with torch.no_grad():
        model[1].weight.copy_(w[:-1].T.float())
        model[1].bias.copy_(w[-1].float())
    return model.eval()
