"""Judge stage: VLM verdicts in both orders with k votes, and their aggregation."""
