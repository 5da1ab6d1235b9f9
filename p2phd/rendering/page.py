"""What a finished render leaves besides the PNGs: the render manifest and ``index.html``.

Render manifest ``p2phd.render/1`` (``render.h5``, or ``render-shard-<I>-of-<N>.h5`` for a shard),
one row per sample of the render, in dataset order. Root attributes besides the common ones of
``p2phd.core.manifest``: ``run``, ``checkpoint`` and ``checkpoint_sha256`` (the G.ckpt used), its
``epoch``/``step``, ``clusters`` and ``clusters_sha256`` ('' without), ``dataset`` and
``dataset_sha256``, ``split``, ``mode`` (labels | clusters | encoded), ``seed``, ``style`` (the
user's class -> centre choices, JSON), ``styles`` and ``styles_sha256`` (the --styles file of
per-object choices, '' without), ``variants``, ``original_size``, ``layout`` (flat |
cityscapes; absent in manifests older than the option: flat), ``shard`` ('' or "I/N"),
``num_samples`` (rows here), ``split_samples`` (samples in the split), ``complete``.
Datasets (N rows, K variants):

- ``names`` (N,) utf-8, ``row`` (N,) int32 (row in the dataset manifest), ``size`` (N, 2) int32
  (H, W of the PNGs);
- ``synthesized`` (N, K), ``label_image`` (N,), ``real_image`` (N,) utf-8 file names relative to
  the output folder ('' when the split has no photo); with ``--layout cityscapes`` paths into its
  tree (``leftImg8bit/<split>/<city>/...``, the label image being variant 0's ``gtFine_color``);
- ``seed`` (N, K) int64 (the --seed styles were drawn from; -1 when nothing was drawn, i.e.
  label-only and encoded renders), ``variant`` (N, K) int32, ``style``
  (N, K) utf-8 JSON: ``[[instance id, class, centre], ...]`` (centre -1 = class without clusters,
  zeros) for cluster renders, ``"encoded"`` when the real photo was encoded, ``""`` otherwise.
"""

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from p2phd.core import manifest

KIND = "render"
_STR = h5py.string_dtype("utf-8")


def write_manifest(
    path: Path,
    records: Sequence[dict[str, Any]],
    attrs: dict[str, Any],
    options: dict[str, Any],
    inputs: Sequence[dict[str, str]],
    argv: Sequence[str] | None,
) -> Path:
    """Write a render manifest atomically. ``records`` come from render_plan.sample_record."""
    k = max((len(r["files"]["synthesized"]) for r in records), default=1)

    def grid(key: str, dtype: Any) -> np.ndarray:
        return np.array([r[key] for r in records], dtype=dtype).reshape(len(records), k)

    with manifest.create(path, KIND, "render", options, inputs, argv=argv) as f:
        f.attrs.update(
            {key: (json.dumps(v) if isinstance(v, dict | list) else v) for key, v in attrs.items()}
        )
        f.attrs["num_samples"] = len(records)
        f.create_dataset("names", data=[r["name"] for r in records], dtype=_STR)
        f.create_dataset("row", data=np.array([r["row"] for r in records], np.int32))
        f.create_dataset(
            "size", data=np.array([r["size"] for r in records], np.int32).reshape(-1, 2)
        )
        synth = [name for r in records for name in r["files"]["synthesized"]]
        f.create_dataset(
            "synthesized", data=np.array(synth, dtype=object).reshape(len(records), k), dtype=_STR
        )
        f.create_dataset("label_image", data=[r["files"]["label"] for r in records], dtype=_STR)
        f.create_dataset("real_image", data=[r["files"]["real"] for r in records], dtype=_STR)
        f.create_dataset("seed", data=grid("seeds", np.int64))
        f.create_dataset("variant", data=grid("variants", np.int32))
        style = np.array([s for r in records for s in r["styles"]], dtype=object)
        f.create_dataset("style", data=style.reshape(len(records), k), dtype=_STR)
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest as plain Python: {'attrs': {...}, 'rows': [{name, row, synthesized, ...}]}."""
    with manifest.open_manifest(path, KIND) as f:
        attrs = manifest.read_attrs(f)
        n = int(attrs["num_samples"])
        cols = {key: f[key][()] for key in ("row", "size", "seed", "variant")}
        strs = {
            key: f[key].asstr()[()]
            for key in ("names", "synthesized", "label_image", "real_image", "style")
        }
    rows = []
    for i in range(n):
        rows.append(
            {
                "name": str(strs["names"][i]),
                "row": int(cols["row"][i]),
                "size": [int(v) for v in cols["size"][i]],
                "synthesized": [str(s) for s in strs["synthesized"][i]],
                "label_image": str(strs["label_image"][i]),
                "real_image": str(strs["real_image"][i]),
                "seed": [int(s) for s in cols["seed"][i]],
                "variant": [int(v) for v in cols["variant"][i]],
                "style": [str(s) for s in strs["style"][i]],
            }
        )
    return {"attrs": attrs, "rows": rows}


_CSS = """
body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; }
td, th { padding: 4px; border-bottom: 1px solid #ddd; vertical-align: top; text-align: left; }
img { max-width: 384px; height: auto; display: block; }
.meta td { border: none; padding: 1px 8px 1px 0; }
"""


def _img(file: str) -> str:
    if not file:
        return "<td></td>"
    src = html.escape(file, quote=True)
    return f'<td><a href="{src}"><img src="{src}" loading="lazy" alt="{src}"></a></td>'


def write_page(path: Path, records: Sequence[dict[str, Any]], info: dict[str, Any]) -> Path:
    """``index.html``: a header describing the render, then label | synthesized | real per row."""
    k = max((len(r["files"]["synthesized"]) for r in records), default=1)
    has_real = any(r["files"]["real"] for r in records)
    heads = ["sample", "label"] + (
        ["synthesized"] if k == 1 else [f"variant {v}" for v in range(k)]
    )
    heads += ["real"] if has_real else []
    meta = "".join(
        f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(str(v))}</td></tr>"
        for key, v in info.items()
    )
    rows = []
    for r in records:
        cells = [f"<td>{html.escape(r['name'])}</td>", _img(r["files"]["label"])]
        cells += [_img(s) for s in r["files"]["synthesized"]]
        if has_real:
            cells.append(_img(r["files"]["real"]))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    title = html.escape(f"p2phd render: {info.get('run', '')} on {info.get('split', '')}")
    doc = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_CSS}</style></head>\n<body><h1>{title}</h1>\n"
        f'<table class="meta">{meta}</table>\n<table>\n<tr>'
        + "".join(f"<th>{h}</th>" for h in heads)
        + "</tr>\n"
        + "\n".join(rows)
        + "\n</table>\n</body></html>\n"
    )
    from p2phd.core.cli import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(doc)
    return path


_METRICS_START, _METRICS_END = "<!-- metrics -->", "<!-- /metrics -->"


def show_metrics(path: Path, items: dict[str, str]) -> None:
    """Put ``bin/evaluate``'s numbers under the page's title (replacing earlier ones).

    A later render rewrites the page without them, which is right: they were of other PNGs."""
    doc = path.read_text()
    start, end = doc.find(_METRICS_START), doc.find(_METRICS_END)
    if start >= 0 and end > start:
        doc = doc[:start] + doc[end + len(_METRICS_END) :]
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in items.items()
    )
    block = (
        f'{_METRICS_START}<table class="meta">{rows}<tr><td colspan="2">'
        f'<a href="metrics.json">metrics.json</a></td></tr></table>{_METRICS_END}\n'
    )
    head, sep, tail = doc.partition("</h1>\n")
    doc = head + sep + block + tail if sep else block + doc
    from p2phd.core.cli import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(doc)
