"""Fixtures shared by the service's tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """The fake detector (a real ONNX file: a dog at 0.9 and a cat at 0.6 on every frame) and its spec."""
    from tests.edgecv.detection.test_detector import make_fake_detector, write_fake_spec

    root = tmp_path_factory.mktemp("fake")
    return {"model": make_fake_detector(root / "fake.onnx"), "spec": write_fake_spec(root / "fake.yaml")}
