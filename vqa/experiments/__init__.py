"""Experiments over many runs: studies (configs x overlays x seeds) and their tables, paired
comparisons, ensembles."""
