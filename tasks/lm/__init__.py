"""Language modelling: tokenizers, document sources, prepared token shards and the task that reads them."""

MANIFEST = "manifest.json"  # the file that describes a prepared folder (tasks.lm.prepare)
