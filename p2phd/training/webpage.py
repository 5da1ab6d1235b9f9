"""`web/index.html` of a run: the loss curves, then label | synthesized | real triplets as
training goes.

Like NVIDIA's visualizer: images are written every --display_freq images to
``web/images/epoch<EEE>_{input_label,synthesized_image,real_image}.jpg`` (later displays in the
same epoch overwrite), and the page lists epochs newest first, under the loss curves
(``web/losses.png``, training/curves.py) when they exist. Only rank 0 calls this.
"""

import html
import os
from pathlib import Path

import numpy as np
from PIL import Image

from p2phd.core.cli import atomic_path
from p2phd.core.palette import colourise, to_uint8
from p2phd.training.curves import CURVES_FILE

KINDS = ("input_label", "synthesized_image", "real_image")


def _save_jpg(arr: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="JPEG", quality=90)


def label_picture(label: np.ndarray, label_nc: int) -> np.ndarray:
    """(H, W) ids -> palette colours; (C, H, W) RGB input in [-1, 1] (label_nc 0) -> uint8."""
    if label.ndim == 2:
        return colourise(label, label_nc)
    return to_uint8(label)


def display_pictures(
    label: np.ndarray, fake: np.ndarray, real: np.ndarray | None, label_nc: int
) -> dict[str, np.ndarray]:
    """One display's (H, W, 3) uint8 pictures by kind (the page's and TensorBoard's)."""
    pictures = {"input_label": label_picture(label, label_nc), "synthesized_image": to_uint8(fake)}
    if real is not None:
        pictures["real_image"] = to_uint8(real)
    return pictures


def write_display(
    web_dir: str | os.PathLike, epoch: int, step: int, pictures: dict[str, np.ndarray]
) -> None:
    """Store one triplet (display_pictures) for `epoch` and rewrite the page."""
    web = Path(web_dir)
    images = web / "images"
    images.mkdir(parents=True, exist_ok=True)
    for kind, arr in pictures.items():
        _save_jpg(arr, images / f"epoch{epoch:03d}_{kind}.jpg")
    with atomic_path(web / f"epoch{epoch:03d}.step") as tmp:
        tmp.write_text(str(step))
    write_index(web, step=step)


def write_index(web_dir: str | os.PathLike, title: str = "p2phd training", step: int = 0) -> Path:
    web = Path(web_dir)
    epochs = sorted({int(p.name[5:8]) for p in (web / "images").glob("epoch*_*.jpg")}, reverse=True)
    rows = []
    for e in epochs:
        step_file = web / f"epoch{e:03d}.step"
        shown = step_file.read_text().strip() if step_file.exists() else "?"
        cells = []
        for kind in KINDS:
            name = f"images/epoch{e:03d}_{kind}.jpg"
            if (web / name).exists():
                cells.append(
                    f'<td><a href="{name}"><img src="{name}" width="384"></a><br>{kind}</td>'
                )
        rows.append(
            f"<h3>epoch {e} (step {html.escape(shown)})</h3>\n<table><tr>{''.join(cells)}</tr></table>"
        )
    if (web / CURVES_FILE).exists():  # ?step=: the refreshing page fetches the new drawing
        rows.insert(0, f'<p><img src="{CURVES_FILE}?step={step}" alt="loss curves"></p>')
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><meta http-equiv='refresh' "
        f"content='30'><title>{html.escape(title)}</title></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n" + "\n".join(rows) + "\n</body></html>\n"
    )
    path = web / "index.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page)
    return path
