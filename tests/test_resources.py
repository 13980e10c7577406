"""resources.py: the shipped data (device profiles, the bundled example and its data) is where
`shipped()` says, whether edgeopt runs from the repository or from an installed wheel."""

from __future__ import annotations

import numpy as np

from edgeopt import targets
from edgeopt.resources import shipped


def test_the_shipped_profiles_are_the_ones_targets_loads():
    names = {path.stem for path in shipped("targets").glob("*.yaml")}
    assert {"jetson-orin-nx-16gb", "cpu-x86-avx2", "t4"} <= names
    assert shipped("targets") in targets.search_dirs()
    assert targets.load_profile(shipped("targets") / "t4.yaml").backend == "tensorrt"


def test_the_bundled_example_and_its_data_are_shipped():
    assert (shipped("examples/digits") / "weights.pt").stat().st_size > 0
    with np.load(shipped("calibration") / "digits_calib.npz") as calib:
        assert calib[calib.files[0]].shape[0] > 0
    assert not shipped("no-such-thing").exists()
