"""The paper's baselines, one file per family."""
