"""The training loop of bin/train: epochs, schedule, logging, web page, saving and resuming.

Counting: epochs from 1; `step` counts optimiser steps over the whole run (per rank, all ranks
step together); `images` = step * batch_size is what the *_freq options count, as NVIDIA's
total_steps. A full state is saved every --save_latest_freq images, at every epoch end and when
--max_steps is reached; data order and crops depend only on (seed, epoch, sample index)
(p2phd.data), so a resumed run sees exactly the batches the uninterrupted run would have.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint, cli, data, runs, schedule, webpage
from .trainer import Trainer, parameter_digest

STATS_FILE = "stats.jsonl"
LOSSES = ("G_GAN", "G_GAN_Feat", "G_VGG", "D_real", "D_fake")


def crossed(images: int, batch: int, freq: int) -> bool:
    """True when the image counter passed a multiple of freq during the last batch."""
    return freq > 0 and images // freq > (images - batch) // freq


class Loop:
    def __init__(self, o: Any, rt: Any, ds: Any, feats: Any, vgg_file: Path | None) -> None:
        self.o, self.rt, self.ds, self.feats = o, rt, ds, feats
        vgg = None
        if vgg_file is not None:
            from .nets.vgg import load_vgg19

            vgg = load_vgg19(vgg_file)
        self.trainer = Trainer(o, ds.max_instances, rt.world_size, vgg)
        self.run_dir = o.run_dir()
        self.pre = data.Preprocessor(
            o, train=True, seed=o.seed, features=feats.map if feats is not None else None
        )
        self.spe = data.steps_per_epoch(len(ds), o.batch_size, rt.world_size)
        if self.spe < 1:
            raise cli.UsageError(
                f"{o.manifest}: {len(ds)} samples cannot fill one batch of "
                f"{o.batch_size} on each of {rt.world_size} devices"
            )
        self.epoch, self.epoch_step, self.step = 1, 0, 0
        self.seen: dict[int, list[str]] = {}  # epoch -> names this rank trained on

    # -- start / resume ------------------------------------------------------------------------
    def start(self, state: Path | None) -> None:
        o, t = self.o, self.trainer
        if state is None:
            t.set_phase(schedule.global_fixed(1, o.niter_fix_global))
            if self.rt.is_main:
                self._truncate_stats(0)
            return
        prog = runs.read_progress(state)
        t.set_phase(bool(prog["fixed_global"]))
        report = checkpoint.load(state / "state.ckpt", t.state_cells())
        if not report.complete:
            bad = (report.missing + report.mismatched)[0]
            raise cli.UsageError(f"{state}: training state does not fit this run ({bad})")
        pool = runs.read_pool(state)
        if pool:
            t.pool.load(pool)
        self.epoch, self.epoch_step, self.step = prog["epoch"], prog["epoch_step"], prog["step"]
        if self.rt.is_main:
            self._truncate_stats(self.step)
        cli.log(f"train: resuming {self.run_dir} at epoch {self.epoch}, step {self.step}")

    def _truncate_stats(self, step: int) -> None:
        """Drop stats lines written after the state we resume from (they will be redone)."""
        path = self.run_dir / STATS_FILE
        if not path.exists():
            return
        keep = [
            ln
            for ln in path.read_text().splitlines()
            if ln.strip() and json.loads(ln)["step"] <= step
        ]
        with cli.atomic_path(path) as tmp:
            tmp.write_text("".join(ln + "\n" for ln in keep))

    # -- the loop ------------------------------------------------------------------------------
    def done(self) -> bool:
        o = self.o
        return self.epoch > schedule.total_epochs(o.niter, o.niter_decay) or bool(
            o.max_steps and self.step >= o.max_steps
        )

    def run(self) -> None:
        if self.done():
            cli.log(
                f"train: {self.run_dir} already trained to epoch {self.epoch - 1}, step {self.step} "
                "(raise --niter/--niter_decay/--max_steps to train longer)"
            )
            self._finish()
            return
        while not self.done():
            self._epoch()
        self._finish()

    def _epoch(self) -> None:
        o, t, rt = self.o, self.trainer, self.rt
        if t.set_phase(schedule.global_fixed(self.epoch, o.niter_fix_global)) and self.step:
            cli.log(
                f"train: epoch {self.epoch}: now training the whole generator (fresh optimiser)"
            )
        lr = schedule.lr_at(self.epoch, o.lr, o.niter, o.niter_decay)
        t.set_lr(lr)
        order = data.epoch_order(len(self.ds), o.seed, self.epoch, not o.serial_batches)
        batches = data.shard(order, o.batch_size, rt.rank, rt.world_size)
        bar = self._bar()
        t_last = time.perf_counter()
        steps_since = 0
        for batch in data.iterate(self.ds, self.pre, batches, self.epoch, self.epoch_step):
            res = t.step(batch, self.step + 1)
            self.step += 1
            self.epoch_step += 1
            steps_since += 1
            if self.rt.world_size > 1 and len(self.ds) <= 64:  # logged at the end (small data only)
                self.seen.setdefault(self.epoch, []).extend(batch["names"])
            images = self.step * o.batch_size
            if bar is not None:
                bar.update(1)
            if crossed(images, o.batch_size, o.print_freq):
                now = time.perf_counter()
                self._stats(res, lr, (now - t_last) / steps_since, bar)
                t_last, steps_since = now, 0
            if rt.is_main and crossed(images, o.batch_size, o.display_freq):
                webpage.write_display(
                    self.run_dir / "web",
                    self.epoch,
                    self.step,
                    batch["label"][0],
                    res.fake[0],
                    batch["photo"][0],
                    o.label_nc,
                )
            at_end = self.epoch_step >= self.spe
            at_max = bool(o.max_steps and self.step >= o.max_steps)
            if at_end:
                self.epoch, self.epoch_step = self.epoch + 1, 0
            if crossed(images, o.batch_size, o.save_latest_freq) or at_end or at_max:
                self._save(lr)
            if (
                at_end
                and o.save_epoch_freq
                and (self.epoch - 1) % o.save_epoch_freq == 0
                and rt.is_main
            ):
                checkpoint.save(
                    self.run_dir / f"G_epoch{self.epoch - 1:03d}.ckpt",
                    t.inference_cells(),
                    {"epoch": self.epoch - 1, "step": self.step},
                )
            if at_max or at_end:
                break
        if bar is not None:
            bar.close()

    def _bar(self):
        if not self.rt.is_main:
            return None
        from tqdm import tqdm

        total = schedule.total_epochs(self.o.niter, self.o.niter_decay)
        return tqdm(
            total=self.spe,
            initial=self.epoch_step,
            desc=f"epoch {self.epoch}/{total}",
            unit="step",
            mininterval=2.0,
            dynamic_ncols=True,
            leave=False,
        )

    def _stats(self, res, lr: float, sec: float, bar) -> None:
        line = {
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step,
            "images": self.step * self.o.batch_size,
        }
        line.update({k: round(float(getattr(res, k)), 6) for k in LOSSES})
        line.update({"lr": lr, "sec_per_step": round(sec, 4)})
        if not self.rt.is_main:
            return
        with open(self.run_dir / STATS_FILE, "a") as f:
            f.write(json.dumps(line) + "\n")
        msg = " ".join(f"{k} {line[k]:.3f}" for k in LOSSES) + f" lr {lr:.2e} {sec:.2f}s/step"
        if bar is not None:
            bar.set_postfix_str(msg, refresh=False)
            bar.write(f"epoch {line['epoch']} step {self.step}: {msg}", file=sys.stderr)
        else:
            cli.log(f"epoch {line['epoch']} step {self.step}: {msg}")

    def _save(self, lr: float) -> None:
        if not self.rt.is_main:
            return
        t = self.trainer
        progress = {
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step,
            "images": self.step * self.o.batch_size,
            "fixed_global": bool(t.fixed_global),
            "lr": lr,
            "world_size": self.rt.world_size,
        }
        runs.write_state(
            self.run_dir,
            progress,
            lambda p: checkpoint.save(p, t.state_cells(), {"step": self.step}),
            t.pool.state() if self.o.pool_size else None,
            self.o.keep,
        )
        checkpoint.save(
            runs.snapshot_path(self.run_dir),
            t.inference_cells(),
            {"epoch": self.epoch if self.epoch_step else self.epoch - 1, "step": self.step},
        )

    def _finish(self) -> None:
        if self.rt.world_size > 1:
            who = f"rank {self.rt.rank}/{self.rt.world_size}"
            for epoch, names in sorted(self.seen.items()):
                cli.log(f"train: {who} epoch {epoch} samples: {','.join(names)}")
            cli.log(f"train: {who} parameter digest {parameter_digest(self.trainer.cells())}")


def l1_to_photos(G: Any, ds: Any, o: Any, E: Any = None) -> float:
    """Mean |G(label) - photo| over a dataset (no crop, no flip): a learning check for tests."""
    from mindspore import Tensor, ops

    from .nets.encoding import encode_condition

    pre = data.Preprocessor(o, train=False)
    total = []
    for i in range(len(ds)):
        b = data.collate([pre(ds.sample(i), i)])
        cond = encode_condition(
            Tensor(b["label"]), Tensor(b["inst"]), o.label_nc, not o.no_instance
        )
        if E is not None:
            cond = ops.cat((cond, E(Tensor(b["photo"]), Tensor(b["pool"]))), 1)
        fake = G(cond).asnumpy()
        total.append(float(np.abs(fake - b["photo"]).mean()))
    return float(np.mean(total))
