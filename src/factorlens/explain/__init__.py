"""Explaining a classifier with generative directions (DiffEx): classifiers, contrastive directions,
AttFind, the ``explain`` pipeline (docs/explain.md)."""
