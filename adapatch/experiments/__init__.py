"""Small, seeded experiments that train and measure the model side on a CPU in minutes.

``python -m adapatch.experiments --out adapatch/assets/model`` builds the cluttered-digits task, trains a
tiny variable-token ViT, the learned token pruner and the learned patch selector, and evaluates
every tokenisation on a held-out split (tokens, accuracy, predicted and measured speed-up).
``python -m adapatch.experiments --eval-only --out adapatch/assets/model`` re-evaluates the saved checkpoint
on the same held-out split without retraining (``evaluate_checkpoint``).
"""

from .cluttered_digits import DatasetConfig, held_out_split, make_dataset
from .eval_only import evaluate_checkpoint

__all__ = ["DatasetConfig", "evaluate_checkpoint", "held_out_split", "make_dataset"]
