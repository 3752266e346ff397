"""The study's experiment grids, their runner, results tables and figures, and the demo."""
