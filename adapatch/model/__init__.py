"""Model side of adapatch: a variable-token ViT (timm parameter names), attention saliency,
token pruning (learned scorer, EViT attentive), a learned patch selector, latency measurement,
and the bundled task model trained on cluttered digits by ``python -m adapatch.experiments``.

Nothing is downloaded at import; timm is optional and only used by ``load_model(<timm name>)``
and a timm ``config.json`` beside a checkpoint; every piece of code that reads timm lives in
``adapatch.model.timm``.
"""

from .agreement import TokenAgreement, token_agreement
from .api import (
                  PruneResult,
                  model_grid,
                  prune_tokens_attention,
                  prune_tokens_learned,
                  pruned_macs,
                  selector_importance,
                  selector_layout,
)
from .attention import attention_saliency, attention_tokens, cls_attention, rollout
from .batching import DynamicBatcher, forward_packed, forward_padded, pack_sequences, pad_sequences
from .config_inference import PREPROCESS
from .embed import AdaptivePatchEmbed, TokenBatch
from .latency import compare_pad_pack, latency_curve, model_macs
from .posenc import PosMLP, sample_pos_embed
from .pruning import TokenPruner, forward_pruned, forward_pruned_train
from .selector import LearnedPatchSelector, relaxed_mask, select_topk, sparsity_penalty
from .sources import TASK, describe_model, resolve_model
from .task import ASSET_DIR, TaskModel, load_task_model, prepare_image, resize_for_model
from .vit import VisionTransformer, ViTConfig
from .weights import (
                  PRESETS,
                  create_model,
                  load_model,
                  load_model_bytes,
                  read_state_dict,
                  read_state_dict_bytes,
                  save_model,
)

__all__ = [
                  "ASSET_DIR",
                  "PREPROCESS",
                  "PRESETS",
                  "TASK",
                  "AdaptivePatchEmbed",
                  "DynamicBatcher",
                  "LearnedPatchSelector",
                  "PosMLP",
                  "PruneResult",
                  "TaskModel",
                  "TokenAgreement",
                  "TokenBatch",
                  "TokenPruner",
                  "ViTConfig",
                  "VisionTransformer",
                  "attention_saliency",
                  "attention_tokens",
                  "cls_attention",
                  "compare_pad_pack",
                  "create_model",
                  "describe_model",
                  "forward_packed",
                  "forward_padded",
                  "forward_pruned",
                  "forward_pruned_train",
                  "latency_curve",
                  "load_model",
                  "load_model_bytes",
                  "load_task_model",
                  "model_grid",
                  "model_macs",
                  "pack_sequences",
                  "pad_sequences",
                  "prepare_image",
                  "prune_tokens_attention",
                  "prune_tokens_learned",
                  "pruned_macs",
                  "read_state_dict",
                  "read_state_dict_bytes",
                  "relaxed_mask",
                  "resize_for_model",
                  "resolve_model",
                  "rollout",
                  "sample_pos_embed",
                  "save_model",
                  "select_topk",
                  "selector_importance",
                  "selector_layout",
                  "sparsity_penalty",
                  "token_agreement",
]
