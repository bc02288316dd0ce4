"""Model: the bundled task ViT's attention, learned/attention token pruning, learned patch selection;
agreement vs tokens of adaptive layouts and pruning for any picked model (the bundled one, a checkpoint
file, a timm name) on the current image or a bundled set; accuracy vs tokens of the bundled results,
the results table and measured-vs-predicted latency (bundled, or measured live on this machine)."""

from __future__ import annotations

import streamlit as st

from adapatch.app_support import model_caveats, model_source, state, ui
from adapatch.app_support import model_view as mv

KEEP_DEFAULT = 0.5
"""The keep ratio the page opens with (its default sample is one the model gets right at it)."""


def _verdict(pred: int, truth: int) -> str:
    """"right", or a wrong prediction in red with the true digit (the Demo marks it red too)."""
    return "right" if pred == truth else f":red[**wrong**, true {truth}]"


st.title("Model")

with ui.guard("model"):
    from adapatch.model.results import task_samples

    st.caption(f"A tiny ViT (patch 8, width 96, depth 4), {mv.training_note()}, on cluttered digits (64x64 "
               "canvases: one digit, distractor fragments, noise). It is not an ImageNet model: its attention and "
               "scores are meaningful for this task only, so the maps below use the task's own held-out images.")
    samples = task_samples()
    names = [s["name"] for s in samples]
    labels = {s["name"]: s["label"] for s in samples}

    @st.fragment
    def maps() -> None:
        with ui.guard():
            dev = mv.model_device()
            c0, c1, c2, c3 = st.columns([1.2, 1, 1, 1])
            with c0:
                start = mv.default_sample(KEEP_DEFAULT, dev)  # one the model gets right: a demo opens on it
                name = st.selectbox("Task image", names, key="m_sample", index=names.index(start),
                                    format_func=lambda n: f"{n} (true digit {labels[n]})")
                mode = st.segmented_control("Attention", ["rollout", "cls"], default="rollout", key="m_mode")
                fusion = st.segmented_control("Head fusion", ["mean", "max"], default="mean", key="m_fusion")
                discard = st.slider("Rollout discard ratio", 0.0, 0.99, 0.9, 0.01, key="m_discard")
                keep = st.slider("Keep ratio (pruning)", 0.05, 1.0, KEEP_DEFAULT, 0.05, key="m_keep")
                k = st.slider("Selector top-k cells", 1, 64, 16, key="m_k")
                st.caption(f"Model calls run on **{dev.upper()}** (the sidebar's device).")
            c1.image(mv.attention_png(name, mode or "rollout", fusion or "mean", discard, 0.55, dev), width="stretch",
                     output_format="PNG", caption=f"{mode} attention (CLS)")
            mv.map_colorbar(c1, f"Colour bar ({mv.MAP_COLORMAP}): attention, 0 (least) to 1 (most) per image")
            imp_png, sel_png = mv.selector_pngs(name, k, dev)
            c2.image(imp_png, width="stretch", output_format="PNG", caption="Learned selector: keep probability")
            mv.map_colorbar(c2, f"Colour bar ({mv.MAP_COLORMAP}): keep probability, 0 to 1")
            c3.image(sel_png, width="stretch", output_format="PNG", caption=f"Selector: top-{k} of 64 tokens")
            # the pruning row: the same columns as the maps above, so all six pictures show at one size
            p0, p1, p2, p3 = st.columns([1.2, 1, 1, 1])
            png, total, pred, prob = mv.full_grid(name, dev)
            p0.markdown("**Token pruning after block 1**")
            p0.caption(f"The model's full grid of {total} tokens of 8 px, then what the learned scorer and EViT's "
                       f"attention keep at a keep ratio of {keep:.2f} (dimmed: dropped). Each predicts a digit from "
                       f"the tokens it keeps; the true digit is {labels[name]}.")
            p1.image(png, width="stretch", output_format="PNG",
                     caption=f"full grid: {total}/{total} tokens · predicts {pred} ({_verdict(pred, labels[name])}, "
                             f"{prob:.0%} sure)")
            for col, method in ((p2, "learned"), (p3, "attention")):
                png, kept, total, pred = mv.pruned(name, method, keep, dev)
                col.image(png, width="stretch", output_format="PNG",
                          caption=f"{method} pruning: {kept}/{total} tokens kept · predicts {pred} "
                                  f"({_verdict(pred, labels[name])})")

    maps()

    st.subheader("Agreement vs tokens")

    @st.fragment
    def agreement() -> None:
        with ui.guard("agreement vs tokens"):
            dev = mv.model_device()
            c0, c1 = st.columns([1, 3], gap="medium")
            with c0:
                st.caption("How far do adaptive layouts and pruning move a model's prediction at equal tokens? Any "
                           "model: the bundled one, a checkpoint file, or a timm name.")
                picked = model_source.picker(dev)
                if picked is None:
                    return
                ref, model = picked
                model_source.summary(ref, model)
            with c1:
                which = st.segmented_control("Images", list(mv.AGREEMENT_IMAGES), default="set", key="m_agree_images",
                                             format_func=mv.AGREEMENT_IMAGES.__getitem__) or "set"
                entry = state.current() if which == "current" else None
                if entry is not None:
                    model_caveats.image_caveat(ref, entry.key)
                mv.token_agreement_view(ref, model, which, entry, key="m_agree")

    agreement()

    st.subheader("Accuracy vs tokens on the held-out split")
    mv.accuracy_chart("m_accuracy")
    st.subheader("Results on the held-out split")
    mv.results_table()

    @st.fragment
    def latency() -> None:
        with ui.guard("latency"):
            st.subheader("Latency: measured against the MACs prediction")
            mv.latency_chart("m_latency", measure=True)

    latency()
