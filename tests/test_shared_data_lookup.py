"""tests/_shared_data.py: $FACTORLENS_SHARED_DATA, then ../shared/data next to the repository; skip when
absent, fail naming the paths when FACTORLENS_REQUIRE_SHARED_DATA=1."""

from __future__ import annotations

import _shared_data
import pytest
from _shared_data import shared_data


@pytest.fixture
def fake_repo(tmp_path, monkeypatch):
    repo = tmp_path / "checkout" / "repo"
    repo.mkdir(parents=True)
    monkeypatch.setattr(_shared_data, "REPO", repo)
    monkeypatch.delenv("FACTORLENS_SHARED_DATA", raising=False)
    monkeypatch.delenv("FACTORLENS_REQUIRE_SHARED_DATA", raising=False)
    return repo


def test_environment_variable_first_then_next_to_the_repository(fake_repo, tmp_path, monkeypatch):
    beside = tmp_path / "checkout" / "shared" / "data" / "ham10000"
    beside.mkdir(parents=True)
    (beside / "HAM10000_metadata.csv").write_text("x")
    assert shared_data("ham10000", "HAM10000_metadata.csv") == beside
    mine = tmp_path / "elsewhere" / "ham10000"
    mine.mkdir(parents=True)
    (mine / "HAM10000_metadata.csv").write_text("x")
    monkeypatch.setenv("FACTORLENS_SHARED_DATA", str(tmp_path / "elsewhere"))
    assert shared_data("ham10000", "HAM10000_metadata.csv") == mine
    assert shared_data("ham10000") == mine


def test_absent_data_skips_or_fails_when_required(fake_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORLENS_SHARED_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(pytest.skip.Exception, match="not found"):
        shared_data("ham10000", "HAM10000_metadata.csv")
    monkeypatch.setenv("FACTORLENS_REQUIRE_SHARED_DATA", "1")
    with pytest.raises(pytest.fail.Exception) as failure:
        shared_data("ham10000", "HAM10000_metadata.csv")
    message = str(failure.value)
    assert str(tmp_path / "nowhere" / "ham10000" / "HAM10000_metadata.csv") in message
    assert str(tmp_path / "checkout" / "shared" / "data" / "ham10000" / "HAM10000_metadata.csv") in message
    assert "FACTORLENS_REQUIRE_SHARED_DATA=1" in message
