"""Generation stage: diffusers generators on Ray actors, pair strategies, encoding."""
