"""Prompt stage: category library, LLM expansion, filters."""
