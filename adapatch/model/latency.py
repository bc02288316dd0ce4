"""Measured forward latency against token count, next to the MACs prediction (multiply-accumulates,
what ViT papers report as FLOPs).

MACs follow ``adapatch.efficiency`` (12 N D^2 + 2 N^2 D per block, embedding N D 3 p^2, head);
``model_macs`` applies it to any ``ViTConfig`` and to pruned runs (N drops after a layer).
Latency is the median wall-clock of ``repeats`` forward passes after ``warmup`` passes, with
CUDA synchronised, under ``torch.inference_mode``. ``measure_latency`` is a short live run of one
preset (the app's "Measure on this machine"), recording where and when it ran.
"""

from __future__ import annotations

import functools
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import torch

from ..device import resolve_device
from ..validation import check_choice, check_int
from .batching import forward_packed, forward_padded
from .embed import TokenBatch


def model_macs(config, num_tokens: int, prune_layer: int | None = None, kept_tokens: int | None = None,
               extra_tokens: int = 0) -> int:
    """MACs of one image: ``num_tokens`` patch tokens (+CLS); after ``prune_layer`` blocks only
    ``kept_tokens`` (+CLS, + ``extra_tokens`` such as EViT's fused token) remain."""
    num_tokens = check_int("num_tokens", num_tokens, 0)
    d, depth, p = config.dim, config.depth, config.patch_size
    hid = config.mlp_ratio * d

    def block(n: int) -> float:
        return 4 * n * d * d + 2 * n * d * hid + 2 * n * n * d

    n0 = num_tokens + 1
    if prune_layer is None:
        blocks = depth * block(n0)
    else:
        n1 = (kept_tokens if kept_tokens is not None else num_tokens) + 1 + extra_tokens
        blocks = prune_layer * block(n0) + (depth - prune_layer) * block(n1)
    return int(blocks + num_tokens * d * 3 * p * p + d * config.num_classes)


def random_tokens(config, batch: int, tokens: int, device: torch.device, seed: int = 0) -> TokenBatch:
    """A ``TokenBatch`` of random patches at random positions (for timing only)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    p = config.patch_size
    patches = torch.randn(batch, tokens, 3, p, p, generator=g).to(device)
    coords = torch.rand(batch, tokens, 3, generator=g).to(device)
    return TokenBatch(patches, coords, torch.full((batch, tokens), -1, device=device), None, [tokens] * batch)


def time_fn(fn: Callable[[], object], device: torch.device, repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs."""
    repeats = check_int("repeats", repeats, 1)
    warmup = check_int("warmup", warmup, 0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        sync()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def latency_curve(model, token_counts: Sequence[int], batch_sizes: Sequence[int] = (1, 32),
                  device: str | torch.device = "auto", repeats: int = 10, warmup: int = 2,
                  progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Forward latency (embedding + encoder + head) per token count and batch size.

    Each row: tokens, batch, ms (per batch), ms_per_image, macs (per image), and the measured
    and predicted speed-ups against the largest token count at the same batch size.
    ``progress(done, total)`` is called after each (batch size, token count) cell.
    """
    dev = resolve_device(device)
    model = model.to(dev).eval()
    rows = []
    total, done = len(batch_sizes) * len(token_counts), 0
    for bs in batch_sizes:
        bs = check_int("batch_size", bs, 1)
        group = []
        for n in token_counts:
            n = check_int("tokens", n, 1)
            tb = random_tokens(model.config, bs, n, dev)
            sec = time_fn(functools.partial(model.forward_tokens, tb), dev, repeats, warmup)
            group.append({"tokens": n, "batch": bs, "ms": sec * 1e3, "ms_per_image": sec * 1e3 / bs,
                          "macs": model_macs(model.config, n)})
            done += 1
            if progress is not None:
                progress(done, total)
        ref = max(group, key=lambda r: r["tokens"])
        for r in group:
            r["measured_speedup"] = ref["ms"] / r["ms"]
            r["predicted_speedup"] = ref["macs"] / r["macs"]
        rows += group
    return rows


QUICK_TOKENS = (25, 49, 98, 196)
"""Token counts of the short live run (the bundled curves also have 147)."""


def environment(device: str | torch.device = "cpu") -> dict:
    """Where a measurement runs: torch, threads, machine, the device and (CUDA) its name."""
    dev = resolve_device(device)
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "device": dev.type, "cuda": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None}


def measure_latency(preset: str = "ViT-B", token_counts: Sequence[int] = QUICK_TOKENS,
                    batch_sizes: Sequence[int] = (1, 8), repeats: int = 3, warmup: int = 1,
                    device: str | torch.device = "auto",
                    progress: Callable[[int, int], None] | None = None) -> dict:
    """A short live ``latency_curve`` of a randomly initialised ViT preset (timing only), with
    where and when it ran: ``{"preset", "curve" (latency_curve rows), "environment",
    "measured_at" (UTC, ISO 8601), "seconds", "settings"}``. The default run (ViT-B, 4 token counts,
    batches 1 and 8, 3 repeats) takes about 10 s on a 2-thread CPU."""
    from .weights import create_model

    dev = resolve_device(device)
    t0 = time.perf_counter()
    model = create_model(preset, device=dev).eval()
    when = datetime.now(timezone.utc)
    rows = latency_curve(model, token_counts, batch_sizes, dev, repeats, warmup, progress)
    return {"preset": preset, "curve": rows, "environment": environment(dev),
            "measured_at": when.isoformat(timespec="seconds"), "seconds": time.perf_counter() - t0,
            "settings": {"token_counts": [int(n) for n in token_counts], "batch_sizes": [int(b) for b in batch_sizes],
                         "repeats": int(repeats), "warmup": int(warmup)}}


def compare_pad_pack(model, token_counts: Sequence[int], device: str | torch.device = "auto",
                     repeats: int = 10, warmup: int = 2) -> dict:
    """Time one batch of sequences with the given token counts through pad + mask and packing."""
    dev = resolve_device(device)
    model = model.to(dev).eval()
    d = model.config.dim
    g = torch.Generator(device="cpu").manual_seed(0)
    seqs = [torch.randn(n + 1, d, generator=g).to(dev) for n in token_counts]
    with torch.inference_mode():
        a = forward_padded(model, seqs)
        b = forward_packed(model, seqs)
    pad = time_fn(lambda: forward_padded(model, seqs), dev, repeats, warmup)
    pack = time_fn(lambda: forward_packed(model, seqs), dev, repeats, warmup)
    return {"batch": len(token_counts), "tokens": list(map(int, token_counts)), "pad_mask_ms": pad * 1e3,
            "packing_ms": pack * 1e3, "faster": "pad+mask" if pad <= pack else "packing",
            "max_abs_diff": float((a - b).abs().max())}


def check_mode(mode: str) -> str:
    return check_choice("mode", mode, ("pad", "pack"))
