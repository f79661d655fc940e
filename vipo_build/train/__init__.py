"""Reference preference losses for training on the exported pairs."""
