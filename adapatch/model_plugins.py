"""The model package's plug-ins: what the layers below ask ``adapatch.plugins`` for.

``saliency`` and ``query`` sit below ``adapatch.model`` and must not name it (docs/architecture.md,
"References upward"); this module, above every layer and imported first by ``adapatch/__init__.py``,
names the functions they reach through the registry. Their modules are imported on first use, so
``import adapatch`` stays torch-free. A new model-backed kind is one line here.
"""

from __future__ import annotations

from . import plugins

plugins.register("saliency", "attention", "adapatch.model.attention:attention_method",
                 "CLS attention / attention rollout of a ViT (needs adapatch.model and weights).")
plugins.register("query", "class", "adapatch.model.query_maps:class_evidence_map",
                 "class evidence of a ViT (gradient x attention; needs adapatch.model)")
plugins.register("query", "text", "adapatch.model.query_maps:text_map",
                 "text relevance from an image-text model (needs open_clip)")
