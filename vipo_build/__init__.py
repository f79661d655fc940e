"""vipo-build: large visual preference datasets, judged by a VLM, written as balanced WebDataset shards."""

__version__ = "0.1.0"
