"""Variable-size patch extraction and reconstruction, batched per patch size.

``extract_patches`` turns every box of a layout into a fixed ``size x size`` token image (what a
fixed-width patch embedding sees); ``reconstruct`` paints those tokens back at their boxes'
sizes, so the difference to the original is exactly the information the layout throws away.
Resizing is area interpolation (``area_resize``): every output pixel is the area-weighted mean of
the input pixels it overlaps. For integer factors that is an exact block mean (down) or pixel
replication (up); other sizes (a uniform grid of 20 px patches) use the same rule with fractional
weights, as OpenCV's ``INTER_AREA`` does when shrinking.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .device import resolve_device
from .layout import PatchLayout
from .resize import area_weights
from .validation import check_int


def image_to_canvas(image: np.ndarray | torch.Tensor, layout: PatchLayout,
                    device: str | torch.device | None = "auto") -> torch.Tensor:
    """Float32 ``[3, canvas_h, canvas_w]`` tensor: the image padded by edge replication.

    Accepts a numpy ``[H, W, 3]`` array in [0, 1] or a torch ``[3, H, W]`` tensor (kept on its
    device unless ``device`` is given explicitly).
    """
    if isinstance(image, torch.Tensor):
        t = image.float()
        if device not in (None, "auto"):
            t = t.to(resolve_device(device))
    else:
        arr = np.asarray(image, dtype=np.float32)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"image must be [H, W, 3], got shape {arr.shape}")
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).to(resolve_device(device))
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"image tensor must be [3, H, W], got {tuple(t.shape)}")
    h, w = t.shape[1:]
    if (h, w) != (layout.height, layout.width):
        raise ValueError(f"image is {h}x{w} but the layout was made for {layout.height}x{layout.width}")
    ph, pw = layout.canvas[0] - h, layout.canvas[1] - w
    if ph or pw:
        t = F.pad(t[None], (0, pw, 0, ph), mode="replicate")[0]
    return t


def _tiles(canvas: torch.Tensor, boxes: np.ndarray, s: int) -> torch.Tensor:
    """``[n, 3, s, s]`` crops of ``canvas`` at boxes of size ``s`` (aligned to the ``s`` grid when
    possible, which makes this a reshape plus one gather)."""
    ys, xs = boxes[:, 0], boxes[:, 1]
    c, H, W = canvas.shape
    dev = canvas.device
    if (ys % s == 0).all() and (xs % s == 0).all() and H % s == 0 and W % s == 0:
        grid = canvas.reshape(c, H // s, s, W // s, s).permute(1, 3, 0, 2, 4)  # [gh, gw, c, s, s]
        iy = torch.as_tensor(ys // s, device=dev, dtype=torch.long)
        ix = torch.as_tensor(xs // s, device=dev, dtype=torch.long)
        return grid[iy, ix]
    # Unaligned boxes (custom layouts): gather with index arithmetic, still one op per size.
    ar = torch.arange(s, device=dev)
    yy = torch.as_tensor(ys, device=dev, dtype=torch.long)[:, None] + ar  # [n, s]
    xx = torch.as_tensor(xs, device=dev, dtype=torch.long)[:, None] + ar
    return canvas[:, yy[:, :, None], xx[:, None, :]].permute(1, 0, 2, 3)


def area_resize(t: torch.Tensor, size: int) -> torch.Tensor:
    """Area-resize ``[n, c, s, s]`` to ``[n, c, size, size]``: block mean down, pixel replication up
    for integer factors (every power-of-two layout), separable area weights otherwise."""
    s = t.shape[-1]
    if s == size:
        return t
    if s > size and s % size == 0:
        return F.avg_pool2d(t, s // size)
    if size % s == 0:
        f = size // s
        return t[:, :, :, None, :, None].expand(-1, -1, -1, f, -1, f).reshape(t.shape[0], t.shape[1], size, size)
    a = torch.as_tensor(area_weights(s, size), dtype=t.dtype, device=t.device)
    return torch.matmul(torch.matmul(a, t), a.T)



def extract_patches(image: np.ndarray | torch.Tensor, layout: PatchLayout, size: int = 16,
                    device: str | torch.device | None = "auto") -> torch.Tensor:
    """Float32 ``[N, 3, size, size]``: each token box resized to ``size`` (area interpolation).

    Tokens come out in ``layout.boxes`` order. One gather and one resize per distinct patch
    size, no per-patch Python loop.
    """
    size = check_int("size", size, 1, 1024)
    return _extract(image_to_canvas(image, layout, device), layout, size)


def _extract(canvas: torch.Tensor, layout: PatchLayout, size: int) -> torch.Tensor:
    out = torch.empty((layout.num_tokens, 3, size, size), dtype=canvas.dtype, device=canvas.device)
    sizes = layout.boxes[:, 2]
    for s in np.unique(sizes):
        idx = np.nonzero(sizes == s)[0]
        tiles = area_resize(_tiles(canvas, layout.boxes[idx], int(s)), size)
        out.index_copy_(0, torch.as_tensor(idx, device=canvas.device), tiles)
    return out


def paint_tokens(tokens: torch.Tensor, layout: PatchLayout, fill: torch.Tensor | None = None) -> torch.Tensor:
    """Canvas ``[3, canvas_h, canvas_w]`` with each ``[3, size, size]`` token resized back to its
    box (area interpolation; pixel replication when the box is larger). Dropped boxes get
    ``fill`` (a colour ``[3]``; default mid-grey)."""
    dev, dtype = tokens.device, tokens.dtype
    ch, cw = layout.canvas
    canvas = torch.empty((3, ch, cw), dtype=dtype, device=dev)
    fillc = torch.full((3,), 0.5, dtype=dtype, device=dev) if fill is None else fill.to(dev, dtype)
    canvas[:] = fillc[:, None, None]
    sizes = layout.boxes[:, 2]
    for s in np.unique(sizes):
        s = int(s)
        idx = np.nonzero(sizes == s)[0]
        t = area_resize(tokens[torch.as_tensor(idx, device=dev)], s)
        b = layout.boxes[idx]
        if (b[:, :2] % s == 0).all() and ch % s == 0 and cw % s == 0:
            # aligned boxes: write through a [gh, gw, 3, s, s] view of the canvas (one scatter)
            grid = canvas.view(3, ch // s, s, cw // s, s).permute(1, 3, 0, 2, 4)
            grid[torch.as_tensor(b[:, 0] // s, device=dev), torch.as_tensor(b[:, 1] // s, device=dev)] = t
            continue
        ar = torch.arange(s, device=dev)
        yy = torch.as_tensor(b[:, 0], device=dev, dtype=torch.long)[:, None] + ar
        xx = torch.as_tensor(b[:, 1], device=dev, dtype=torch.long)[:, None] + ar
        canvas[:, yy[:, :, None], xx[:, None, :]] = t.permute(1, 0, 2, 3)
    return canvas


def reconstruct(image: np.ndarray | torch.Tensor, layout: PatchLayout, size: int = 16,
                device: str | torch.device | None = "auto") -> np.ndarray:
    """What a fixed-width embedding sees: float32 ``[H, W, 3]`` painted from the tokens.

    Dropped boxes carry no information; they are painted with the image's mean colour.
    """
    size = check_int("size", size, 1, 1024)
    canvas = image_to_canvas(image, layout, device)
    tokens = _extract(canvas, layout, size)
    mean = canvas[:, : layout.height, : layout.width].mean(dim=(1, 2))
    out = paint_tokens(tokens, layout, fill=mean)[:, : layout.height, : layout.width]
    return out.permute(1, 2, 0).contiguous().cpu().numpy()
