"""Rotary position embeddings (RoPE) for tokens at arbitrary places: timm's RoPE ViTs, adaptively patched.

The rotary math only (torch, no timm import). It reproduces the rotary tables of timm's
``timm.layers.pos_embed_sincos`` classes used by ``timm.models.eva.Eva`` (``vit_*_rope_*``,
``vit_pe_*``, ``vit_*_dinov3*``, ``vit_*_sapiens2``, ``vit_*_lingbot``, ``vit_*_rope_mixed_*``,
``eva02_*``) and evaluates them at continuous positions, so a token can be a square patch of any
size at any place. Reading a timm rotary module into a ``RopeConfig`` is
``adapatch.model.timm.rope.rope_config_from_timm``.

Coordinate convention
---------------------
A token's position is its **centre**, ``(row, col)`` = ``(y, x)``, in units of the model's patch
grid, measured from the image's top-left corner. The token of a uniform grid at row ``i``, column
``j`` therefore has centre ``(i + 0.5, j + 0.5)``; an adaptive patch whose top-left pixel is
``(y, x)`` and whose side is ``s`` pixels has centre ``((y + s/2) / P, (x + s/2) / P)`` for patch
size ``P`` (``centers_from_boxes``). Every timm grid is an affine function of the cell index per
axis, so the centre of a patch covering ``k x k`` cells gets exactly the mean of those cells'
timm positions, and a uniform grid reproduces timm's table exactly (float32, same operations).

``grid_shape`` ``(Hg, Wg)`` is the uniform grid timm would use for the same image at the model's
patch size (``img_h / P, img_w / P``; for a fixed-size timm model, ``patch_embed.grid_size``). It
matters where timm normalises by the grid size: ``'pixel'`` and ``'centered'`` grids,
``ref_feat_shape`` rescaling and DINOv3's coordinates. Non-integer sizes continue the same formulas.

What each kind computes (``c`` = centre in cells, ``t = c - 0.5`` = timm's cell index, per axis;
``S`` = that axis' grid size, ``R`` = its ``ref_feat_shape`` entry; eval mode, no augmentation)
----------------------------------------------------------------------------------------------
* ``"cat"`` (``RotaryEmbeddingCat``): a position per axis, by ``grid_type``:
  ``'index'``: ``t + grid_offset``; ``'pixel'``: ``linspace(-1, 1, S)`` read at ``t`` (linear in
  between); ``'centered'``: ``2 (c + grid_offset) / D - 1`` with ``D`` = ``S``, ``min`` or ``max`` of
  the grid (``normalize_coords``). With ``ref_feat_shape``, the position is multiplied by ``R / S``
  (before the ``[-1, 1]`` mapping for ``'centered'``). Bands: ``head_dim // 4`` of
  ``1 / temperature ** (k / nb)`` or, with ``in_pixels``, ``pi * linspace(1, max_res / 2)`` (linear)
  or ``pi * 2 ** linspace(0, log2(max_res) - 1)`` (log). Angles = position x band, per axis.
* ``"dinov3"`` (``RotaryEmbeddingDinoV3``): position ``2 (c + grid_offset) / D - 1`` as
  ``'centered'``; angles ``2 pi position / period`` with ``head_dim // 4`` periods
  ``temperature ** (2k / (head_dim // 2))`` or ``min_period (max/min) ** linspace(0, 1)``.
* ``"mixed"`` (``RotaryEmbeddingMixed``, RoPE-Mixed): learned frequencies ``freqs``
  ``[2, depth, num_heads, head_dim // 2]`` (the ``rope.freqs`` parameter of timm's state dict);
  angle = ``t_x freqs[0] + t_y freqs[1]`` with ``(t_x, t_y)`` the ``(col, row)`` index for
  ``grid_indexing='xy'`` (``(row, col)`` for ``'ij'``); one table per block and head.
* ``"mrope"`` (``RotaryEmbeddingMRope``): the ``head_dim // 2`` frequencies
  ``1 / temperature ** (2k / head_dim)`` are assigned to height (channels 1, 4, 7, ...), width
  (2, 5, 8, ...) and an inert temporal axis, strided by ``mrope_section``; positions ``t``.

``grid_indexing='xy'`` puts the column coordinate's channels first (timm's channel order); the
token order is always the caller's. Angles become ``[sin | cos]`` tables of width ``2 * head_dim``,
each in the interleaved layout ``[f0, f0, f1, f1, ...]`` or, with ``rotate_half``, the half layout
``[f0, f1, ..., f0, f1, ...]`` - what timm's ``apply_rot_embed_cat(x, emb, half=rotate_half)``
expects. ``apply_rope`` rotates patch tokens only: the ``num_prefix_tokens`` class/register tokens
that come first are left as they are, as in timm's ``EvaAttention``/``AttentionRope``.

Computation runs in float64 for float64 centres and in float32 otherwise (timm's dtype); the
frequency bands are built on the CPU as timm does, then moved to the centres' device.
Training-time coordinate augmentation (``shift/jitter/rescale_coords``) is recorded in the config
but never applied: these tables are timm's eval-mode tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn

__all__ = [
    "KINDS",
    "RopeConfig",
    "RopeEmbedding",
    "apply_rope",
    "centers_from_boxes",
    "centers_from_normalized",
    "grid_centers",
    "layer_rope",
    "rope_bands",
    "rope_embedding",
    "rope_positions",
]

KINDS = ("cat", "mixed", "dinov3", "mrope")
_GRID_TYPES = ("index", "pixel", "centered")
_NORMALIZE = ("separate", "min", "max")
_INDEXING = ("ij", "xy")


# ---------------------------------------------------------------------------------------- config

@dataclass
class RopeConfig:
    """Hyperparameters of one of timm's rotary embeddings (plain data: ``to_dict``/``from_dict``, JSON-safe).

    kind: ``"cat"`` | ``"mixed"`` | ``"dinov3"`` | ``"mrope"`` (see the module docstring).
    head_dim: rotated channels per attention head (timm's ``dim`` for cat/dinov3/mrope,
        ``dim // num_heads`` for mixed).
    rotate_half: half layout (and ``apply_rot_embed_cat(..., half=True)``) instead of interleaved.
    grid_indexing: ``'ij'`` (row coordinate's channels first) or ``'xy'`` (column first).
    grid_offset: added to ``'index'``/``'centered'``/dinov3 positions (not to ``'pixel'``).
    temperature: band base (cat, mrope), period base (dinov3), init base (mixed, informative).
    in_pixels, max_res, linear_bands: cat only - pixel-frequency bands instead of temperature bands.
    grid_type, normalize_coords, ref_feat_shape: cat only - coordinate grid (dinov3 uses
        normalize_coords with its fixed centred grid).
    min_period, max_period: dinov3 only - period schedule replacing temperature when both set.
    num_heads, depth: mixed only - the learned ``freqs`` are ``[2, depth, num_heads, head_dim // 2]``.
    mrope_section: mrope only - ``(temporal, height, width)`` channel extents.
    shift_coords, jitter_coords, rescale_coords: timm's training-only augmentation (never applied).
    """

    kind: str = "cat"
    head_dim: int = 64
    rotate_half: bool = False
    grid_indexing: str = "ij"
    grid_offset: float = 0.0
    temperature: float | None = 10000.0
    in_pixels: bool = False
    max_res: float = 224
    linear_bands: bool = False
    grid_type: str = "index"
    normalize_coords: str = "separate"
    ref_feat_shape: tuple[int, int] | None = None
    min_period: float | None = None
    max_period: float | None = None
    num_heads: int | None = None
    depth: int | None = None
    mrope_section: tuple[int, int, int] | None = None
    shift_coords: float | None = None
    jitter_coords: float | None = None
    rescale_coords: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unsupported rotary embedding kind {self.kind!r} (supported: {', '.join(KINDS)})")
        self.head_dim = _pos_int("rope head_dim", self.head_dim)
        self.rotate_half = bool(self.rotate_half)
        self.in_pixels = bool(self.in_pixels)
        self.linear_bands = bool(self.linear_bands)
        if self.grid_indexing not in _INDEXING:
            raise ValueError(f"unsupported rope grid_indexing {self.grid_indexing!r} (supported: 'ij', 'xy')")
        if self.grid_type not in _GRID_TYPES:
            raise ValueError(f"unsupported rope grid_type {self.grid_type!r} (supported: {', '.join(_GRID_TYPES)})")
        if self.normalize_coords not in _NORMALIZE:
            raise ValueError(f"unsupported rope normalize_coords {self.normalize_coords!r} "
                             f"(supported: {', '.join(_NORMALIZE)})")
        self.grid_offset = _finite("rope grid_offset", self.grid_offset)
        self.max_res = _finite("rope max_res", self.max_res)
        for name in ("temperature", "min_period", "max_period", "shift_coords", "jitter_coords", "rescale_coords"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, _finite(f"rope {name}", v))
        for name in ("temperature", "min_period", "max_period"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ValueError(f"rope {name} must be positive, got {v}")
        if self.ref_feat_shape is not None:
            ref = tuple(self.ref_feat_shape)
            if len(ref) != 2:
                raise ValueError(f"rope ref_feat_shape must have 2 entries (H, W), got {len(ref)}")
            self.ref_feat_shape = (_pos_int("rope ref_feat_shape", ref[0]), _pos_int("rope ref_feat_shape", ref[1]))
        k = self.kind
        if k in ("cat", "dinov3", "mixed") and self.head_dim % 4:
            raise ValueError(f"rope head_dim {self.head_dim} is not a multiple of 4 "
                             f"(timm's {k} table would not cover the head)")
        if k == "cat":
            if not self.in_pixels and self.temperature is None:
                raise ValueError("rope temperature is required for temperature bands (in_pixels=False)")
            if self.in_pixels and self.max_res <= 0:
                raise ValueError(f"rope max_res must be positive, got {self.max_res}")
        if k == "dinov3":
            if (self.min_period is None) != (self.max_period is None):
                raise ValueError("rope min_period and max_period must be given together")
            if self.min_period is None and self.temperature is None:
                raise ValueError("dinov3 rope needs temperature or min_period/max_period")
        if k != "cat":
            if self.ref_feat_shape is not None:
                raise ValueError(f"rope ref_feat_shape (rescaled grids) is not used by the {k} kind")
            if self.in_pixels or self.grid_type != "index":
                raise ValueError(f"rope in_pixels / grid_type apply to the cat kind only, not {k}")
        if k == "mixed":
            self.num_heads = _pos_int("mixed rope num_heads", self.num_heads)
            self.depth = _pos_int("mixed rope depth", self.depth)
            if self.rotate_half:
                raise ValueError("mixed rope with rotate_half (timm requires the interleaved layout)")
            if self.grid_offset:
                raise ValueError("mixed rope with a grid_offset (timm's RotaryEmbeddingMixed has none)")
        if k == "mrope":
            if self.head_dim % 2:
                raise ValueError(f"mrope head_dim {self.head_dim} is odd")
            sec = tuple(self.mrope_section) if self.mrope_section is not None else (8, 12, 12)
            if len(sec) != 3 or any(int(s) != s or s < 0 for s in sec):
                raise ValueError(f"mrope_section must be 3 non-negative ints, got {self.mrope_section}")
            self.mrope_section = (int(sec[0]), int(sec[1]), int(sec[2]))
            if self.grid_indexing != "ij":
                raise ValueError("mrope with grid_indexing='xy' (timm supports 'ij' only)")
            if not self.rotate_half:
                raise ValueError("mrope without rotate_half (timm always uses the half layout)")
            if self.grid_offset:
                raise ValueError("mrope with a grid_offset (timm's RotaryEmbeddingMRope has none)")
            if self.temperature is None:
                raise ValueError("mrope needs a temperature")
        elif self.mrope_section is not None:
            raise ValueError(f"rope mrope_section is not used by the {k} kind")
        if k != "mixed" and (self.num_heads is not None or self.depth is not None):
            # informative only for the shared-table kinds; keep them consistent ints
            self.num_heads = None if self.num_heads is None else _pos_int("rope num_heads", self.num_heads)
            self.depth = None if self.depth is None else _pos_int("rope depth", self.depth)

    # -- serialisation
    def to_dict(self) -> dict:
        """Plain dict (tuples for shapes); ``json.dumps``-able."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | RopeConfig) -> RopeConfig:
        """Inverse of ``to_dict`` (lists from JSON are accepted for the tuple fields)."""
        if isinstance(d, RopeConfig):
            return cls(**d.to_dict())
        if not isinstance(d, Mapping):
            raise ValueError(f"a rope config must be a dict, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown rope config keys: {', '.join(unknown)}")
        kw = dict(d)
        for name in ("ref_feat_shape", "mrope_section"):
            if kw.get(name) is not None:
                kw[name] = tuple(kw[name])
        return cls(**kw)

    @property
    def per_layer(self) -> bool:
        """True when every block has its own table (``"mixed"``)."""
        return self.kind == "mixed"


def _pos_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or v is None:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    try:
        iv = int(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive int, got {v!r}") from None
    if iv != v or iv < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return iv


def _finite(name: str, v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"{name} must be a number, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {v!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return f


# ---------------------------------------------------------------------------------------- math

def _compute_dtype(dtype: torch.dtype | None) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def rope_bands(cfg: RopeConfig, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The CPU frequency vector of ``cfg``, as timm computes it.

    cat: ``[head_dim // 4]`` bands; dinov3: ``[head_dim // 4]`` periods; mrope: ``[head_dim // 2]``
    inverse frequencies. (mixed has learned ``freqs`` instead: ValueError.)
    """
    dt = _compute_dtype(dtype)
    nb = cfg.head_dim // 4
    if cfg.kind == "cat":
        if cfg.in_pixels:
            max_freq = float(cfg.max_res)
            if cfg.linear_bands:
                bands = torch.linspace(1.0, max_freq / 2, nb, dtype=dt)
            else:
                bands = 2 ** torch.linspace(0, math.log(max_freq, 2) - 1, nb, dtype=dt)  # timm's log, not log2
            return bands * torch.pi
        exp = torch.arange(0, nb, 1, dtype=torch.int64).to(dt) / nb
        assert cfg.temperature is not None  # RopeConfig requires it for temperature bands
        return 1.0 / (float(cfg.temperature) ** exp)
    if cfg.kind == "dinov3":
        if cfg.min_period is not None and cfg.max_period is not None:
            exponents = torch.linspace(0, 1, nb, dtype=dt)
            return cfg.min_period * ((cfg.max_period / cfg.min_period) ** exponents)
        exponents = 2.0 * torch.arange(nb, dtype=dt) / (cfg.head_dim // 2)
        assert cfg.temperature is not None  # RopeConfig requires it without both periods
        return float(cfg.temperature) ** exponents
    if cfg.kind == "mrope":
        exp = torch.arange(0, cfg.head_dim, 2, dtype=torch.int64).to(dt) / cfg.head_dim
        assert cfg.temperature is not None  # RopeConfig requires it for mrope
        return 1.0 / (float(cfg.temperature) ** exp)
    raise ValueError("mixed rope has learned frequencies (RopeEmbedding.freqs), not bands")


def _grid_shape(grid_shape: Sequence[float]) -> tuple[float, float]:
    try:
        hg, wg = grid_shape
    except (TypeError, ValueError):
        raise ValueError(f"grid_shape must be (Hg, Wg), got {grid_shape!r}") from None
    out = []
    for v in (hg, wg):
        if isinstance(v, torch.Tensor):
            v = v.item()
        f = _finite("grid_shape", v)
        if f <= 0:
            raise ValueError(f"grid_shape must be positive, got {tuple(grid_shape)}")
        out.append(int(f) if f.is_integer() else f)
    return out[0], out[1]


def _pixel_coord(t: torch.Tensor, size: float) -> torch.Tensor:
    """timm's ``linspace(-1, 1, size)`` read at (fractional) index ``t``; grid points are looked up in
    torch's own linspace so they match it bit for bit, positions in between follow its slope."""
    if isinstance(size, int):
        if size == 1:
            return torch.full_like(t, -1.0)
        lin = torch.linspace(-1.0, 1.0, size, device=t.device, dtype=t.dtype)
        k0 = t.floor().clamp(0, size - 1)
        return lin[k0.long()] + (t - k0) * (2.0 / (size - 1))
    return -1.0 + t * (2.0 / (size - 1))


def rope_positions(cfg: RopeConfig, centers: torch.Tensor, grid_shape: Sequence[float]) -> torch.Tensor:
    """timm's grid coordinates of tokens centred at ``centers`` ``[..., 2]`` (row, col in cells).

    Returns ``[..., 2]`` in timm's channel order (``(x, y)`` for ``grid_indexing='xy'``), in the
    compute dtype (float64 for float64 centres, else float32). Not used by "mixed"/"mrope", whose
    positions are the plain indices ``centers - 0.5``.
    """
    if centers.shape[-1] != 2:
        raise ValueError(f"centers must be [..., 2] (row, col), got {tuple(centers.shape)}")
    c = centers.to(_compute_dtype(centers.dtype))
    sizes = _grid_shape(grid_shape)
    ref = cfg.ref_feat_shape
    grid_type = "centered" if cfg.kind == "dinov3" else cfg.grid_type
    if cfg.kind in ("mixed", "mrope"):
        grid_type = "index"
    if grid_type == "centered":
        if cfg.normalize_coords == "max":
            denom = [float(max(sizes))] * 2
        elif cfg.normalize_coords == "min":
            denom = [float(min(sizes))] * 2
        else:
            denom = [float(s) for s in sizes]
    axes = []
    for a in range(2):
        ca = c[..., a]
        if grid_type == "index":
            p = (ca - 0.5) + cfg.grid_offset
        elif grid_type == "pixel":
            p = _pixel_coord(ca - 0.5, sizes[a])
        else:
            p = (ca + cfg.grid_offset) / denom[a]
        if ref is not None:
            p = p / sizes[a] * ref[a]
        if grid_type == "centered":
            p = 2.0 * p - 1.0
        axes.append(p)
    if cfg.grid_indexing == "xy":
        axes = axes[::-1]
    return torch.stack(axes, dim=-1)


def _layout(x: torch.Tensor, rotate_half: bool) -> torch.Tensor:
    return torch.cat([x, x], dim=-1) if rotate_half else x.repeat_interleave(2, -1)


def rope_embedding(cfg: RopeConfig | Mapping, centers: torch.Tensor, grid_shape: Sequence[float],
                   freqs: torch.Tensor | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Rotary ``[sin | cos]`` tables of tokens centred at ``centers`` (row, col in patch-grid cells).

    ``centers``: ``[N, 2]`` or ``[B, N, 2]``. ``grid_shape``: ``(Hg, Wg)``, the uniform grid timm
    would use for the image. ``freqs``: the learned ``[2, depth, heads, head_dim // 2]`` frequencies
    (``"mixed"`` only). Returns, with ``D = 2 * head_dim``:

    * cat / dinov3 / mrope: ``[N, D]`` (timm's ``get_embed`` shape) or ``[B, 1, N, D]``;
    * mixed: ``[depth, heads, N, D]`` (timm's ``get_embed``) or ``[depth, B, heads, N, D]``.

    Either broadcasts against ``q``/``k`` ``[B, heads, N, head_dim]`` in ``apply_rope`` (take
    ``[i]`` for block ``i`` of a mixed model). dtype: output dtype (default: compute dtype).
    """
    cfg = cfg if isinstance(cfg, RopeConfig) else RopeConfig.from_dict(cfg)
    if centers.ndim not in (2, 3) or centers.shape[-1] != 2:
        raise ValueError(f"centers must be [N, 2] or [B, N, 2], got {tuple(centers.shape)}")
    if not (centers.is_floating_point()):
        centers = centers.to(torch.float32)
    batched = centers.ndim == 3
    cdt = _compute_dtype(centers.dtype)
    dev = centers.device
    c = centers.to(cdt)
    if cfg.kind == "mixed":
        if freqs is None:
            raise ValueError("mixed rope needs its learned freqs")
        want = (2, cfg.depth, cfg.num_heads, cfg.head_dim // 2)
        if tuple(freqs.shape) != want:
            raise ValueError(f"mixed rope freqs of shape {tuple(freqs.shape)}, expected {want}")
        t = c - 0.5  # plain cell indices
        tx, ty = (t[..., 1], t[..., 0]) if cfg.grid_indexing == "xy" else (t[..., 0], t[..., 1])
        f = freqs.to(device=dev, dtype=cdt)
        if batched:  # [B, N] x [depth, heads, K] -> [depth, B, heads, N, K]
            fx, fy = f[0][:, None, :, None, :], f[1][:, None, :, None, :]
            ang = tx[None, :, None, :, None] * fx + ty[None, :, None, :, None] * fy
        else:  # [N] x [depth, heads, K] -> [depth, heads, N, K]
            ang = tx[:, None] * f[0].unsqueeze(-2) + ty[:, None] * f[1].unsqueeze(-2)
        emb = torch.cat([_layout(ang.sin(), False), _layout(ang.cos(), False)], dim=-1)
        return emb.to(dtype) if dtype is not None else emb
    bands = rope_bands(cfg, cdt).to(dev)
    if cfg.kind == "mrope":
        t = c - 0.5
        zero = torch.zeros_like(t[..., :1])
        pos = torch.cat([zero, t], dim=-1)  # (temporal, row, col)
        axis = _mrope_axis(cfg).to(dev)
        ang = pos.index_select(-1, axis) * bands
        emb = torch.cat([_layout(ang.sin(), True), _layout(ang.cos(), True)], dim=-1)
    else:
        pos = rope_positions(cfg, c, grid_shape)  # [..., N, 2]
        ang = 2 * math.pi * pos[..., None] / bands if cfg.kind == "dinov3" else pos[..., None] * bands
        ang = ang.flatten(-2)  # [..., N, 2 * nb]: first coordinate's bands, then the second's
        emb = torch.cat([_layout(ang.sin(), cfg.rotate_half), _layout(ang.cos(), cfg.rotate_half)], dim=-1)
    if batched:
        emb = emb.unsqueeze(1)  # [B, 1, N, D]: broadcasts over heads
    return emb.to(dtype) if dtype is not None else emb


def _mrope_axis(cfg: RopeConfig) -> torch.Tensor:
    axis = torch.zeros(cfg.head_dim // 2, dtype=torch.long)
    assert cfg.mrope_section is not None  # RopeConfig fills it in for mrope
    _, sec_h, sec_w = cfg.mrope_section
    axis[1:sec_h * 3:3] = 1
    axis[2:sec_w * 3:3] = 2
    return axis


def _rotate(x: torch.Tensor, rotate_half: bool) -> torch.Tensor:
    if rotate_half:
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([-x2, x1], dim=-1)
    return torch.stack([-x[..., 1::2], x[..., ::2]], -1).reshape(x.shape)


def apply_rope(x: torch.Tensor, emb: torch.Tensor, num_prefix_tokens: int = 0,
               rotate_half: bool = False) -> torch.Tensor:
    """Rotate queries or keys ``x`` ``[..., P + N, head_dim]`` by ``emb`` ``[..., N, 2 * head_dim]``.

    The first ``num_prefix_tokens`` tokens (class, registers) are returned unchanged, as in timm's
    ``EvaAttention``/``AttentionRope``; ``emb`` must broadcast against the other ``N``. Uses timm's
    ``apply_rot_embed_cat`` arithmetic and returns ``x``'s dtype.
    """
    npt = int(num_prefix_tokens)
    if npt < 0 or npt > x.shape[-2]:
        raise ValueError(f"num_prefix_tokens must be in [0, {x.shape[-2]}], got {num_prefix_tokens}")
    if emb.shape[-1] != 2 * x.shape[-1]:
        raise ValueError(f"rope table width {emb.shape[-1]} does not match head size {x.shape[-1]} (needs 2x)")
    if emb.shape[-2] != x.shape[-2] - npt:
        raise ValueError(f"rope table has {emb.shape[-2]} positions for {x.shape[-2] - npt} patch tokens")
    xp = x[..., npt:, :]
    sin, cos = emb.chunk(2, dim=-1)
    out = (xp * cos + _rotate(xp, rotate_half) * sin).to(x.dtype)
    if npt == 0:
        return out
    return torch.cat([x[..., :npt, :], out], dim=-2)


def layer_rope(emb: torch.Tensor | None, index: int, per_layer: bool) -> torch.Tensor | None:
    """The table of block ``index``: ``emb[index]`` for per-layer (mixed) tables, else ``emb``."""
    if emb is None:
        return None
    return emb[index] if per_layer else emb


# ------------------------------------------------------------------------------------- centres

def grid_centers(grid_shape: Sequence[int], device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[Hg * Wg, 2]`` centres ``(i + 0.5, j + 0.5)`` of a uniform grid, row-major (timm's token order)."""
    hg, wg = (int(s) for s in grid_shape)
    r = torch.arange(hg, device=device, dtype=dtype) + 0.5
    q = torch.arange(wg, device=device, dtype=dtype) + 0.5
    cy, cx = torch.meshgrid(r, q, indexing="ij")
    return torch.stack([cy.reshape(-1), cx.reshape(-1)], dim=-1)


def centers_from_boxes(boxes: torch.Tensor | Any, patch_size: int, dtype: torch.dtype = torch.float32,
                       device: torch.device | str | None = None) -> torch.Tensor:
    """Centres ``[..., 2]`` in cells of square boxes ``[..., 3]`` = ``(y, x, size)`` in pixels
    (``PatchLayout.boxes``): ``((y + size / 2) / P, (x + size / 2) / P)``, exact for grid boxes."""
    b = torch.as_tensor(boxes, device=device).to(torch.float64)
    if b.shape[-1] != 3:
        raise ValueError(f"boxes must be [..., 3] (y, x, size), got {tuple(b.shape)}")
    half = b[..., 2:3] / 2
    return ((b[..., :2] + half) / float(patch_size)).to(dtype)


def centers_from_normalized(coords: torch.Tensor, hw: Sequence[int], patch_size: int,
                            snap: bool = True) -> torch.Tensor:
    """Centres ``[..., 2]`` in cells from normalised ``(cy / H, cx / W, ...)`` coordinates (the
    ``TokenBatch.coords`` convention) of an ``H x W`` image. ``snap`` rounds pixel centres to the
    nearest half pixel (integer boxes have no others), undoing float32 rounding of the normalised
    values so that a uniform grid reproduces timm's table exactly."""
    h, w = hw
    px = torch.stack([coords[..., 0].double() * h, coords[..., 1].double() * w], dim=-1)
    if snap:
        px = torch.round(px * 2) / 2
    out_dtype = coords.dtype if coords.is_floating_point() else torch.float32
    return (px / float(patch_size)).to(out_dtype)


# -------------------------------------------------------------------------------------- module

class RopeEmbedding(nn.Module):
    """Rotary embeddings of a ViT, for tokens at arbitrary centres.

    ``RopeEmbedding(config, heads=None, head_dim=None, depth=None)``: ``config`` a ``RopeConfig``
    or its dict; ``heads``/``head_dim``/``depth`` (the ViT's) are checked against it and complete a
    mixed config. For ``"mixed"`` the learned frequencies are the parameter ``freqs``
    ``[2, depth, heads, head_dim // 2]`` - timm's ``rope.freqs``, so a module registered as ``rope``
    loads timm's state dict key unchanged; the other kinds have no parameters or buffers.

    ``forward(centers, grid_shape, dtype=None)`` -> ``rope_embedding(...)`` (shapes there);
    ``per_layer`` tells whether the result has a leading block axis.
    """

    def __init__(self, config: RopeConfig | Mapping, heads: int | None = None, head_dim: int | None = None,
                 depth: int | None = None) -> None:
        super().__init__()
        if isinstance(config, RopeConfig):
            d = config.to_dict()
        elif isinstance(config, Mapping):
            d = dict(config)
        else:
            raise ValueError(f"a rope config must be a RopeConfig or a dict, got {type(config).__name__}")
        if head_dim is not None and int(head_dim) != d.get("head_dim"):
            raise ValueError(f"rope head_dim {d['head_dim']} differs from the model's head size {head_dim}")
        if d.get("kind") == "mixed":
            for key, v in (("num_heads", heads), ("depth", depth)):
                if v is None:
                    continue
                if d.get(key) is None:
                    d[key] = int(v)
                elif int(v) != d[key]:
                    raise ValueError(f"mixed rope {key} {d[key]} differs from the model's {v}")
        self.config = RopeConfig.from_dict(d)
        self.freqs: nn.Parameter | None
        if self.config.kind == "mixed":
            c = self.config
            assert c.depth is not None and c.num_heads is not None  # RopeConfig requires both for mixed
            self.freqs = nn.Parameter(torch.empty(2, c.depth, c.num_heads, c.head_dim // 2))
            self.reset_parameters()
        else:
            self.freqs = None

    @property
    def per_layer(self) -> bool:
        return self.config.per_layer

    @property
    def rotate_half(self) -> bool:
        return self.config.rotate_half

    def reset_parameters(self) -> None:
        """Mixed only: timm's initialisation (``init_random_2d_freqs``), axial magnitudes at a random
        rotation per block and head."""
        if self.freqs is None:
            return
        c = self.config
        assert c.depth is not None and c.num_heads is not None  # RopeConfig requires both for mixed
        hd, temp = c.head_dim, float(c.temperature if c.temperature is not None else 10.0)
        with torch.no_grad():
            mag = 1.0 / (temp ** (torch.arange(0, hd, 4, dtype=torch.float32) / hd))
            ang = torch.rand(c.depth, c.num_heads, 1) * 2 * torch.pi
            fx = torch.cat([mag * torch.cos(ang), mag * torch.cos(ang + torch.pi / 2)], dim=-1)
            fy = torch.cat([mag * torch.sin(ang), mag * torch.sin(ang + torch.pi / 2)], dim=-1)
            self.freqs.copy_(torch.stack([fx, fy], dim=0))

    def forward(self, centers: torch.Tensor, grid_shape: Sequence[float],
                dtype: torch.dtype | None = None) -> torch.Tensor:
        return rope_embedding(self.config, centers, grid_shape, freqs=self.freqs, dtype=dtype)

    def extra_repr(self) -> str:
        c = self.config
        return f"kind={c.kind}, head_dim={c.head_dim}, rotate_half={c.rotate_half}, grid_indexing={c.grid_indexing}"
