"""Query maps from a model: class evidence from a ViT, and text relevance from an image-text model.

``adapatch.query_map`` calls these for the ``"class"`` and ``"text"`` kinds of query (plug-ins,
``adapatch.plugins``: this module is imported on first use). Both return float32 ``[H, W]`` maps
in [0, 1] at the image's own size: the model runs on its fixed input (the image is resized to it,
aspect not kept, as for attention saliency), the token-grid map is upsampled bilinearly (cv2) and
min-max normalised (a constant map is all zeros).

**Class evidence** (``class_evidence_map``) works for any loaded ``VisionTransformer`` or the
bundled ``TaskModel``: class token or not (average / max / attention-pool heads), registers,
distillation token, RoPE. Two methods:

- ``"gradattn"`` (the default): gradient x attention, accumulated over the blocks (Chefer, Gur &
  Wolf, "Generic Attention-model Explainability...", ICCV 2021, their rule for self-attention):
  per block ``A_bar = mean_heads(relu(dA * A))`` with ``dA`` the gradient of the target logit
  with respect to the attention probabilities ``A``, ``R <- R + A_bar @ R`` from ``R = I``; the map
  is the class token's row of ``R`` over the patch tokens (no class token: the mean row of the
  patch tokens, as attention saliency does). It uses every block, so it sees evidence that a
  shallow model gathers early, and the gradient makes it class-specific where plain attention
  (rollout) is not.
- ``"gradcam"``: Grad-CAM on the token grid, at the input of the last block:
  ``relu(sum_c mean_tokens(d logit / d h_c) * h_c)``. One layer, cheaper to read, but on a class-
  token ViT the patch tokens reach the class token only through that last block's attention,
  and on the bundled task model it is not class-specific. Measured on two held-out digits of
  different classes on one canvas (``tests/test_query_maps.py``, 40 canvases): the map for one
  digit's class puts more mass on that digit than on the other in 68 of 80 cases with
  ``"gradattn"``, 35 of 80 (chance) with ``"gradcam"``. The score is the raw logit: the log-
  probability or a logit centred on the mean logit gave the same 68 of 80.

Gradients are taken with ``torch.autograd.grad`` on a fresh leaf (the embedded tokens): the
model's parameters, their ``.grad`` and ``requires_grad`` flags are never touched, a model in
training mode is run in eval mode for the call and put back, and the result is deterministic
on the CPU. Random weights are refused unless ``allow_random=True`` (as for attention saliency:
random evidence is never shown as evidence).

**Text relevance** (``text_map``) runs an open_clip model (an optional extra:
``pip install open_clip_torch``; ``pip install 'adapatch[query]'``): ``method="tokens"`` is the
cosine similarity between the text embedding and each patch token of the CLIP
visual tower's last block, taken through the tower's own final norm and projection into the
joint space (``visual.forward_intermediates``, open_clip's public API for its ViT towers);
``method="gradient"`` is gradient x input of the image-text cosine similarity, pooled over the
tower's patch grid (it needs only ``encode_image``, so it also works for towers whose patch
tokens have no projection into the joint space, such as an attention-pool head, or non-ViT
towers); ``"auto"`` (the default) takes ``"tokens"`` where it applies, else ``"gradient"``.
The token similarity is the direct reading of "where does the image match the text" and needs
one forward pass; gradient x input is noisier (pixel-level) but always defined.
``model`` may be an open_clip ``(model, tokenizer)`` pair already loaded, which needs no import
of open_clip here, or a name ``"ARCH/PRETRAINED_TAG"`` (``"ViT-B-32/openai"``) or
``"hf-hub:org/repo"`` loaded through open_clip: like a timm name, that downloads its weights on
first use when they are not cached. ``text_available()`` says whether open_clip can be used.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..device import resolve_device
from ..messages import first_line
from ..model_refs import OPEN_CLIP_HINT, open_clip_missing
from ..validation import check_choice, check_rgb
from .attention import read_row
from .task import as_vit, prepare_image

CLASS_METHODS = ("gradattn", "gradcam")
TEXT_METHODS = ("auto", "tokens", "gradient")
DEFAULT_TEXT_MODEL = "ViT-B-32/openai"
# CLIP's (OpenAI) input normalisation, for a model that does not carry its own preprocess_cfg
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _to_image_map(grid: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``grid`` upsampled bilinearly to ``hw`` and min-max normalised (constant -> zeros)."""
    h, w = hw
    up = cv2.resize(np.ascontiguousarray(grid, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    if not np.all(np.isfinite(up)):
        up = np.nan_to_num(up, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(up.min()), float(up.max())
    return ((up - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros((h, w), np.float32)


class _eval_mode:
    """Run a module in eval mode for a block and restore its own training flags afterwards."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.flags: list[tuple[torch.nn.Module, bool]] = []

    def __enter__(self) -> None:
        self.flags = [(m, m.training) for m in self.module.modules() if m.training]
        if self.flags:
            self.module.eval()

    def __exit__(self, *exc) -> None:
        for m, flag in self.flags:
            m.training = flag


# ---------------------------------------------------------------------------------- class evidence
def _check_target(vit, target) -> int:
    n = int(vit.config.num_classes)
    if n <= 0:
        raise ValueError("target: this model has no classifier head (num_classes 0), so there is no class to "
                         "explain; pick a model with class logits")
    if isinstance(target, bool) or not hasattr(target, "__index__") or not 0 <= int(target) < n:
        raise ValueError(f"target must be a class index in [0, {n - 1}] for this model ({n} classes), got {target!r}")
    return int(target)


def _resolve_vit(model, device):
    if isinstance(model, str) or model is None:
        from .sources import resolve_model
        model = resolve_model(model, device=device, cache=True)  # shared and read-only: never modified here
    return as_vit(model)


def class_evidence_tokens(image: np.ndarray, model, target: int, device: str | torch.device = "auto",
                          method: str = "gradattn", allow_random: bool = False) -> np.ndarray:
    """Float32 ``[G, G]`` class evidence on the model's fixed token grid, non-negative, not normalised.

    Same arguments as ``class_evidence_map``."""
    method = check_choice("method", method, CLASS_METHODS)
    vit = _resolve_vit(model, device)
    target = _check_target(vit, target)
    if not vit.pretrained and not allow_random:
        raise ValueError("model has random weights (pretrained=False): its class evidence is not meaningful. "
                         "Load weights (load_model / load_task_model) or pass allow_random=True explicitly.")
    x = prepare_image(image, vit, device)
    vit = vit.to(x.device)
    g, npt = vit.config.grid_size, vit.num_prefix_tokens
    with _eval_mode(vit), torch.inference_mode(False), torch.enable_grad():
        x = x.clone().to(next(vit.parameters()).dtype)
        rope = vit.rope_fixed(x.device)
        with torch.no_grad():
            tokens = vit.embed_fixed(x)
        tokens = tokens.detach().requires_grad_(True)  # a fresh leaf: the graph exists even for frozen weights
        if method == "gradcam":
            last = len(vit.blocks) - 1
            h, _ = vit.forward_features(tokens, end=last, rope=rope)  # the last block's input (no final norm)
            out, _ = vit.forward_features(h, start=last, rope=rope)
            (dh,) = torch.autograd.grad(vit.forward_head(out)[0, target], h)
            weights = dh[0, npt:].float().mean(dim=0)
            cam = (h[0, npt:].detach().float() * weights).sum(dim=-1).clamp(min=0)
        else:
            out, attns = vit.forward_features(tokens, return_attn=True, rope=rope)
            grads = torch.autograd.grad(vit.forward_head(out)[0, target], attns)
            t = attns[0].shape[-1]
            r = torch.eye(t, device=x.device, dtype=torch.float32)[None]
            for a, da in zip(attns, grads):
                a_bar = (da.float() * a.detach().float()).clamp(min=0).mean(dim=1)
                r = r + a_bar @ r
            cam = read_row(r, npt, vit.cls_token is not None)[0]
    return cam.reshape(g, g).detach().cpu().numpy().astype(np.float32)


def class_evidence_map(image: np.ndarray, model, target: int, device: str | torch.device = "auto",
                       method: str = "gradattn", allow_random: bool = False) -> np.ndarray:
    """Float32 ``[H, W]`` in [0, 1]: where ``model`` finds evidence for class ``target`` in ``image``.

    ``model``: anything ``resolve_model`` accepts (``"task"`` or None for the bundled
    cluttered-digits model, a checkpoint path, a timm name, or a loaded ``VisionTransformer`` /
    ``TaskModel``; a loaded model is moved to ``device``, as attention saliency does).
    ``target``: a class index in ``[0, num_classes)``; a model without a classifier head is
    refused. ``method``: ``"gradattn"`` (gradient x attention over all blocks, the default) or
    ``"gradcam"`` (Grad-CAM on the token grid at the last block); see the module docstring for
    why. Random weights are refused unless ``allow_random=True``. Bad arguments raise a one-line
    ``ValueError`` naming the parameter."""
    grid = class_evidence_tokens(image, model, target, device, method, allow_random)
    return _to_image_map(grid, np.shape(image)[:2])


# ---------------------------------------------------------------------------------- text
@lru_cache(maxsize=1)
def _open_clip_status() -> str | None:
    missing = open_clip_missing()
    if missing is not None:
        return missing
    try:
        import open_clip  # noqa: F401  (slow the first time: it imports torchvision and timm)
    except Exception as e:  # noqa: BLE001 - a torchvision built for another torch fails with a RuntimeError
        return f"{OPEN_CLIP_HINT}; it is installed but does not import ({first_line(e, named=True)})"
    return None


def text_available() -> str | None:
    """None when text queries can run here (open_clip imports), else the one-line reason.

    The answer is computed once per process (importing open_clip is slow)."""
    return _open_clip_status()


def _require_open_clip():
    why = text_available()
    if why is not None:
        raise ValueError(why)
    import open_clip
    return open_clip


@lru_cache(maxsize=2)
def _load_named(name: str, device: str):
    open_clip = _require_open_clip()
    if name.startswith("hf-hub:"):
        arch, tag = name, None
    elif "/" in name:
        arch, tag = name.split("/", 1)
    else:
        raise ValueError(f"model must name pretrained weights, 'ARCH/TAG' (e.g. {DEFAULT_TEXT_MODEL!r}) or "
                         f"'hf-hub:org/repo', got {name!r}: an architecture alone has random weights")
    from ..messages import one_line
    from .timm.hub import hub_offline, hub_reachable

    online = hub_reachable()  # offline, only cached weights load and a miss fails at once (no retries)
    try:
        with (contextlib.nullcontext() if online else hub_offline()):
            model = open_clip.create_model(arch, pretrained=tag, device=device)
            tokenizer = open_clip.get_tokenizer(arch)
    except Exception as e:  # noqa: BLE001 - unknown name or tag, hub unreachable, not cached
        why = first_line(e, named=True) if online else "offline and its weights are not cached"
        raise ValueError(one_line(f"model: open_clip could not load {name!r}: {why}")) from None
    return model.eval(), tokenizer


def _resolve_text_model(model, device: torch.device):
    if model is None:
        model = DEFAULT_TEXT_MODEL
    if isinstance(model, str):
        if not model.strip():
            raise ValueError("model must be an open_clip (model, tokenizer) pair or a name like "
                             f"{DEFAULT_TEXT_MODEL!r}, got ''")
        return _load_named(model.strip(), str(device))
    if isinstance(model, (tuple, list)) and len(model) == 2 and callable(model[1]) \
            and hasattr(model[0], "encode_text") and hasattr(model[0], "visual"):
        return model[0], model[1]
    raise ValueError("model must be an open_clip (model, tokenizer) pair or a name like "
                     f"{DEFAULT_TEXT_MODEL!r}, got {type(model).__name__}")


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[-1])
    return int(v), int(v)


def _clip_input(image: np.ndarray, visual, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[1, 3, h, w]``: the image resized (aspect not kept, so the map covers all of it) to the
    tower's input size and normalised with its mean / std."""
    h, w = _pair(getattr(visual, "image_size", 224))
    a = image
    if a.shape[:2] != (h, w):
        interp = cv2.INTER_AREA if a.shape[0] > h or a.shape[1] > w else cv2.INTER_LINEAR
        a = cv2.resize(a, (w, h), interpolation=interp)
    cfg = getattr(visual, "preprocess_cfg", None) or {}
    mean = torch.tensor(cfg.get("mean", CLIP_MEAN), dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", CLIP_STD), dtype=torch.float32).view(1, 3, 1, 1)
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]
    return ((t - mean) / std).to(device=device, dtype=dtype)


def _text_embedding(clip, tokenizer, text: str, device: torch.device) -> torch.Tensor:
    tokens = tokenizer([text])
    tokens = tokens.to(device) if isinstance(tokens, torch.Tensor) else tokens
    with torch.no_grad():
        return F.normalize(clip.encode_text(tokens).float(), dim=-1)[0]


def _patch_similarity(visual, x: torch.Tensor, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | str:
    """``[gh, gw]`` cosine similarity of the text embedding ``t`` with each patch token of the last
    block (through the tower's final norm and projection), or why this tower cannot give it."""
    if not hasattr(visual, "forward_intermediates"):
        return "this visual tower has no forward_intermediates (not an open_clip ViT tower)"
    proj = getattr(visual, "proj", None)
    if not isinstance(proj, (torch.Tensor, torch.nn.Module)) or getattr(visual, "attn_pool", None) is not None:
        return "this visual tower's patch tokens have no projection of their own into the joint space"
    with torch.no_grad():
        out = visual.forward_intermediates(x, indices=1, normalize_intermediates=True, intermediates_only=True,
                                           output_fmt="NCHW")
        feat = out["image_intermediates"][-1][0].float()  # [C, gh, gw], after the tower's final norm
        c, gh, gw = feat.shape
        feat = feat.permute(1, 2, 0).reshape(gh * gw, c)
        if isinstance(proj, torch.Tensor):
            feat = feat @ proj.detach().float()
        elif isinstance(proj, torch.nn.Module):
            feat = proj(feat.to(dtype)).float()
    if feat.shape[-1] != t.shape[-1]:
        return (f"the patch tokens ({feat.shape[-1]} wide) are not in the text embedding's space "
                f"({t.shape[-1]} wide) for this tower (its projection follows a pooling)")
    return (F.normalize(feat, dim=-1) @ t).reshape(gh, gw)


def _patch_size(visual) -> tuple[int, int]:
    p = getattr(visual, "patch_size", None)
    if p is None:  # open_clip's TimmModel: the timm trunk's patch embedding
        p = getattr(getattr(getattr(visual, "trunk", None), "patch_embed", None), "patch_size", 16)
    return _pair(p)


def text_tokens(image: np.ndarray, text: str, model=None, device: str | torch.device = "auto",
                method: str = "auto") -> np.ndarray:
    """Float32 relevance of ``text`` on the visual tower's patch grid (``tokens``) or its input
    pixels pooled to that grid (``gradient``); not normalised. Same arguments as ``text_map``."""
    method = check_choice("method", method, TEXT_METHODS)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    image = check_rgb(image)
    dev = resolve_device(device)
    clip, tokenizer = _resolve_text_model(model, dev)
    clip = clip.to(dev)
    visual = clip.visual
    dtype = next(clip.parameters()).dtype
    x = _clip_input(image, visual, dev, dtype)
    with _eval_mode(clip), torch.inference_mode(False):
        t = _text_embedding(clip, tokenizer, text.strip(), dev)
        if method != "gradient":
            sim = _patch_similarity(visual, x, t, dtype)
            if isinstance(sim, torch.Tensor):
                return sim.cpu().numpy().astype(np.float32)
            if method == "tokens":
                raise ValueError(f"method: {sim}; use method='gradient'")
        with torch.enable_grad():
            xin = x.detach().clone().requires_grad_(True)
            f = F.normalize(clip.encode_image(xin).float(), dim=-1)[0]
            (dx,) = torch.autograd.grad(f @ t, xin)
        pix = (dx * xin.detach()).float().abs().sum(dim=1)[0]  # [h, w]
    ph, pw = _patch_size(visual)
    gh, gw = max(1, pix.shape[0] // ph), max(1, pix.shape[1] // pw)
    pooled = F.adaptive_avg_pool2d(pix[None, None], (gh, gw))[0, 0]
    return pooled.cpu().numpy().astype(np.float32)


def text_map(image: np.ndarray, text: str, model=None, device: str | torch.device = "auto",
             method: str = "auto") -> np.ndarray:
    """Float32 ``[H, W]`` in [0, 1]: where ``text`` matches ``image``, through an image-text model.

    ``model``: an open_clip ``(model, tokenizer)`` pair (used as is, moved to ``device``), or a
    name loaded through open_clip, ``"ARCH/TAG"`` or ``"hf-hub:org/repo"`` (None:
    ``DEFAULT_TEXT_MODEL``; a named model downloads its weights on first use when they are not
    cached, and the last two are kept). ``method``: ``"tokens"`` (patch-token / text cosine
    similarity in the joint space), ``"gradient"`` (gradient x input of the image-text
    similarity, pooled over the patch grid) or ``"auto"`` (the default: ``"tokens"`` where the
    tower's patch tokens project into the joint space, as in open_clip's own ViT towers, else
    ``"gradient"``, e.g. a tower whose projection follows an attention pool). Without a usable open_clip a name raises
    the one-line ``ValueError`` that ``text_available()`` gives."""
    grid = text_tokens(image, text, model, device, method)
    return _to_image_map(grid, np.shape(image)[:2])
