"""Write stage: shard plan, WebDataset + Parquet shards, commit records."""
