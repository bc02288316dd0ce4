"""The ImageNet-1k class names bundled with adapatch: ``adapatch/assets/classes/imagenet_classes.txt``.

    /work/timmvenv/bin/python benchmarks/make_imagenet_classes.py [--timm-info DIR] [--out FILE]

Source: the synset list and the synset-to-lemma table that timm ships as package data
(``timm/data/_info/imagenet_synsets.txt``: the 1000 ImageNet-1k WordNet ids in class-index order,
and ``imagenet_synset_to_lemma.txt``; timm is Apache-2.0, the lemmas come from Princeton WordNet,
whose licence allows redistribution; see ``adapatch/assets/classes/LICENSE.md``). No network: the
files are read from an installed timm (by default the one ``import timm`` finds, else ``--timm-info``).

Each line is the class's first lemma ("tench, Tinca tinca" -> "tench"), in index order, so line
``i`` is class ``i``. Two first lemmas are shared by two classes each ("crane": the bird and the
machine; "maillot": two swimsuits); those get a qualifier so every name is unique.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "adapatch" / "assets" / "classes" / "imagenet_classes.txt"
QUALIFIERS = {"n02012849": "crane (bird)", "n03126707": "crane (machine)",
              "n03710637": "maillot", "n03710721": "maillot (tank suit)"}
"""Names for the synsets whose first lemma another class shares (the definitions say which is which)."""


def timm_info_dir() -> Path:
    import timm.data  # only this script needs timm
    return Path(timm.data.__file__).parent / "_info"


def class_names(info: Path) -> list[str]:
    synsets = [s.strip() for s in (info / "imagenet_synsets.txt").read_text().splitlines() if s.strip()]
    lemmas = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines()
                  if "\t" in line)
    if len(synsets) != 1000:
        raise SystemExit(f"expected 1000 ImageNet-1k synsets, got {len(synsets)}")
    names = [QUALIFIERS.get(s, lemmas[s].split(",")[0].strip()) for s in synsets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SystemExit(f"class names are not unique: {dup}")
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timm-info", type=Path, default=None, help="timm's data/_info folder (default: import timm)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    names = class_names(args.timm_info or timm_info_dir())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(names) + "\n")
    print(f"wrote {len(names)} names to {args.out}")


if __name__ == "__main__":
    main()
