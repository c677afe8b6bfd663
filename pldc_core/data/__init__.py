"""Datasets, splits, augmentations and loaders."""
