"""The real HAM10000 copy in $FACTORLENS_SHARED_DATA/ham10000 or ../shared/data/ham10000 next to the
repository (tests/_shared_data.py: skipped when absent, fails when FACTORLENS_REQUIRE_SHARED_DATA=1).
Decodes everything once (about a minute on 2 cores), then reuses the default cache."""

from __future__ import annotations

import numpy as np
import pytest
from _shared_data import shared_data

from factorlens.data import describe, load_dataset, split_indices

EXPECTED_COUNTS = {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}


@pytest.mark.slow
def test_real_ham10000_counts_groups_and_split():
    ham10000 = shared_data("ham10000", "HAM10000_metadata.csv")
    dataset = load_dataset(f"ham10000:{ham10000}", progress=False)
    counts = np.bincount(dataset.labels, minlength=7)
    assert {name.lower(): int(counts[i]) for i, name in enumerate(dataset.class_names)} == EXPECTED_COUNTS
    assert dataset.images.shape == (10015, 3, 64, 64) and dataset.masks.shape == (10015, 64, 64)
    assert len(np.unique(dataset.groups)) == 7470
    train, test = split_indices(dataset, test_fraction=0.2, seed=0)
    assert set(dataset.groups[train]).isdisjoint(dataset.groups[test])
    assert len(train) + len(test) == 10015 and abs(len(test) - 2003) < 10
    assert dataset.notes["missing_masks"] == 0
    measured = ~np.isnan(dataset.handcrafted[:, 0])
    assert measured.sum() == 10015 - dataset.notes["empty_masks"]
    assert "NV 6705" in describe(dataset)
