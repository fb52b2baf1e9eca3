"""Datasets (official on-disk layouts and a built-in synthetic one), transforms and loaders."""
