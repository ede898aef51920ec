"""Generative LUMEN (issue 20): one causal LM whose vocabulary holds the catalogue.

- :mod:`.semantic_ids`: item code tuples (residual k-means, or one token per item) and their prefix trie;
- :mod:`.model`: the backbone + LoRA + item-token rows, the constrained loss, beam search, full-catalogue scores;
- :mod:`.examples`: training examples from training users (history/critique -> item, item -> narrative);
- :mod:`.narratives`: training narratives written by a local LLM, kept in a resumable file;
- :mod:`.distill`: a teacher's (the LUMEN tower's) full-catalogue scores as soft targets per code position;
- :mod:`.train`: resumable training (a warm start from another run, a constant or cosine rate, a teacher,
  bf16 autocast) and checkpoints;
- :mod:`.retriever`: the model as a :class:`~lumenrec.retriever.base.BaseRetriever`.

Needs the ``lumen-gen`` extra (peft) for the model; semantic IDs are numpy only.
"""

# the training rate's schedules after the warm-up (LumenGenTrainConfig.lr_schedule); here, torch-free, for CLIs
LR_SCHEDULES = ("constant", "cosine")
# the training forward's precision (LumenGenTrainConfig.precision)
PRECISIONS = ("fp32", "bf16")
