"""Evaluation of trained language models beyond the training run's own validation (``python -m experiments.eval``):

* ``checkpoint``: a trained model and its tokenizer back from a run's record and checkpoint;
* ``harness``: the lm-evaluation-harness model class (loglikelihood, rolling loglikelihood, greedy generation);
* ``downstream``: Table 3's six tasks as harness tasks on local JSONL (``export`` fetches them where the hub is
  reachable, ``local_data`` writes the small scale's offline data);
* ``paloma`` and ``perplexity``: PALOMA's per-source token perplexity in lm-evaluation-harness's disjoint rolling
  windows, comparable to the paper's Table 4;
* ``run``: the command, writing records under results/eval_downstream and results/eval_paloma.
"""
