"""The embedder daemon: claims queued work, runs the models, writes results."""
