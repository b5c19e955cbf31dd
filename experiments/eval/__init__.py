"""Evaluation of trained language models beyond the training run's own validation: PALOMA-style per-source token
perplexity (``perplexity``). The windows follow lm-evaluation-harness's rolling log-likelihood, so the numbers are
comparable to the paper's Table 4."""
