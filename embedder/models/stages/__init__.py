"""One module per model stage: load a model, run it on a batch, return plain results."""
