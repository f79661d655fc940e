"""Exports of a finished root in the formats trainers read: Pick-a-Pic Parquet, a `datasets` dataset, video Parquet."""
