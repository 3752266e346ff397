"""File formats shared by data preparation, training and evaluation (one reader each), and
their progress bars."""
