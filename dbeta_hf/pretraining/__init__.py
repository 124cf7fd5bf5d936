"""Pretraining: the collator (masking, N3S negatives, ETS views), the N3S index, the Trainer subclass, recipes and
the corpus tokenizer."""
