"""128 px end to end (train, evaluate, traverse, discover); 32 px and 1 channel: test_image_sizes.py."""

from __future__ import annotations

import pytest
from _image_sizes import check_size_end_to_end


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")


def test_train_evaluate_traverse_discover_at_128_px(tmp_path):
    check_size_end_to_end(tmp_path, 128, full_table=False)  # full Table 1 at 32 px
