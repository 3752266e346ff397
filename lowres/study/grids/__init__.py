"""The study's experiment grids: ``definitions`` (each grid as data), ``runs`` (a grid
expanded into train.py runs and their folders) and ``runner`` (``python -m lowres.grid``:
list, run locally, one SLURM array task, sbatch lines)."""
