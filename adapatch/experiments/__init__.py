"""Small, seeded experiments that train and measure the model side on a CPU in minutes.

``python -m adapatch.experiments --out assets/model`` builds the cluttered-digits task, trains a
tiny variable-token ViT, the learned token pruner and the learned patch selector, and evaluates
every tokenisation on a held-out split (tokens, accuracy, predicted and measured speed-up).
"""

from .cluttered_digits import DatasetConfig, make_dataset

__all__ = ["DatasetConfig", "make_dataset"]
