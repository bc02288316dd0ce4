"""Everything adapatch knows about timm, in one place (timm itself stays optional).

* ``arch``: reading a timm ViT instance into a ``ViTConfig`` (``config_from_timm``, refusing what
  adapatch does not reproduce) and timm's ``Eva`` state-dict names into adapatch's
  (``timm_state_dict``);
* ``rope``: reading timm's rotary-embedding modules into a ``RopeConfig``
  (``rope_config_from_timm``; the rotary math is ``adapatch.model.rope``);
* ``build``: importing timm (``import_timm``), building an architecture on the ``meta`` device
  (``meta_build``), its config by name (``timm_arch_config``) or from timm's ``config.json``;
* ``hub``: the Hugging Face hub (``hub_reachable``, ``hub_offline``) and timm's pretrained
  weights (``pretrained``; ``adapatch.model.load_model("<timm name>")`` builds the ViT from them).

Nothing here imports timm at module import; ``arch`` and ``rope`` only read attributes. Import
from the submodules (this package's ``__init__`` imports none of them, so that importing one
loads only what it needs).
"""
