"""Ray pools, storage and the per-unit cache shared by the stages."""
