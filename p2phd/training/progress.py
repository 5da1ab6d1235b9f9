"""What a training run tells the user: the tqdm bar, `stats.jsonl` lines, the web page with its
loss curves (not with --no_html) and, with --tensorboard, TensorBoard event files (board.py).

One ``Progress`` per rank; only rank 0 writes files. A line of `stats.jsonl` holds the losses of
the step it was logged at (G_GAN, G_GAN_Feat, G_VGG, D_real, D_fake), the lr, the mean seconds
per step since the last line and the images per second of the whole job (all workers).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from p2phd.core import bars, cli
from p2phd.training import curves, schedule, webpage

STATS_FILE = "stats.jsonl"
LOSSES = ("G_GAN", "G_GAN_Feat", "G_VGG", "D_real", "D_fake")


def append_line(path: Path, text: str) -> None:
    """Append one whole line or nothing: a failed write (full disk) is cut back off."""
    data = text.encode()
    with cli.writing(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        start = os.fstat(fd).st_size
        try:
            while data:
                data = data[os.write(fd, data) :]
        except BaseException:
            os.ftruncate(fd, start)
            raise
        finally:
            os.close(fd)


class Progress:
    def __init__(
        self, o: Any, run_dir: Path, is_main: bool, steps_per_epoch: int, world_size: int = 1
    ) -> None:
        self.o, self.run_dir, self.is_main, self.spe = o, run_dir, is_main, steps_per_epoch
        self.world_size = world_size
        self.bar = None
        self.board = None
        self._t_last = time.perf_counter()
        self._steps_since = 0

    def start(self, step: int) -> None:
        """From `step` on (0, or the resumed state's): what was logged after it will be redone."""
        if not self.is_main:
            return
        self.truncate_stats(step)
        if self.o.tensorboard:
            from p2phd.training.board import Board

            self.board = Board(self.run_dir, step + 1)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None

    def truncate_stats(self, step: int) -> None:
        """Drop stats lines written after the state we resume from (they will be redone)."""
        path = self.run_dir / STATS_FILE
        if not self.is_main or not path.exists():
            return
        keep = [
            ln
            for ln in path.read_text().splitlines()
            if ln.strip() and json.loads(ln)["step"] <= step
        ]
        with cli.atomic_path(path) as tmp:
            tmp.write_text("".join(ln + "\n" for ln in keep))

    def open_epoch(self, epoch: int, epoch_step: int) -> None:
        self._t_last, self._steps_since = time.perf_counter(), 0
        if not self.is_main:
            return
        total = schedule.total_epochs(self.o.niter, self.o.niter_decay)
        self.bar = bars.bar(
            self.spe, f"epoch {epoch}/{total}", "step", initial=epoch_step, transient=True
        )

    def close_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def stepped(self) -> None:
        self._steps_since += 1
        if self.bar is not None:
            self.bar.update(1)

    def log(self, res: Any, lr: float, epoch: int, epoch_step: int, step: int) -> None:
        now = time.perf_counter()
        sec = (now - self._t_last) / max(self._steps_since, 1)
        self._t_last, self._steps_since = now, 0
        line = {"epoch": epoch, "epoch_step": epoch_step, "step": step}
        line["images"] = step * self.o.batch_size
        line.update({k: round(float(getattr(res, k)), 6) for k in LOSSES})
        line.update({"lr": lr, "sec_per_step": round(sec, 4)})
        line["images_per_sec"] = round(self.o.batch_size * self.world_size / max(sec, 1e-9), 4)
        if not self.is_main:
            return
        append_line(self.run_dir / STATS_FILE, json.dumps(line) + "\n")
        if self.board is not None:
            self.board.scalars(line, LOSSES)
        msg = " ".join(f"{k} {line[k]:.3f}" for k in LOSSES) + f" lr {lr:.2e} {sec:.2f}s/step"
        if self.bar is not None:
            self.bar.set_postfix_str(msg, refresh=False)
            self.bar.write(f"epoch {epoch} step {step}: {msg}", file=sys.stderr)
        else:
            cli.log(f"epoch {epoch} step {step}: {msg}")

    def display(self, epoch: int, step: int, batch: dict, fake: Any) -> None:
        if not self.is_main:
            return
        pictures = webpage.display_pictures(
            batch["label"][0], fake[0], batch["photo"][0], self.o.label_nc
        )
        if not self.o.no_html:
            web = self.run_dir / "web"
            stats = curves.read_stats(self.run_dir / STATS_FILE)
            curves.draw(stats, web / curves.CURVES_FILE, self.run_dir.name)
            webpage.write_display(web, epoch, step, pictures)
        if self.board is not None:
            self.board.images(step, pictures)
