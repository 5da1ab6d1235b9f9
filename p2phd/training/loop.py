"""The training loop of bin/train: epochs, the lr schedule and when to log, display and save.

Counting: epochs from 1; `step` counts optimiser steps over the whole run (per rank, all ranks
step together); `images` = step * batch_size is what the *_freq options count, as NVIDIA's
total_steps. A full state is saved every --save_latest_freq images, at every epoch end and when
--max_steps is reached; data order and crops depend only on (seed, epoch, sample index)
(p2phd.data.pipeline), so a resumed run sees exactly the batches the uninterrupted run would have.
What is logged and shown lives in progress.py, what is saved and resumed in saving.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from p2phd.core import cli
from p2phd.data import pipeline as data
from p2phd.training import saving, schedule
from p2phd.training.progress import Progress
from p2phd.training.trainer import Trainer, parameter_digest


def crossed(images: int, batch: int, freq: int) -> bool:
    """True when the image counter passed a multiple of freq during the last batch."""
    return freq > 0 and images // freq > (images - batch) // freq


class Loop:
    def __init__(self, o: Any, rt: Any, ds: Any, feats: Any, vgg_file: Path | None) -> None:
        self.o, self.rt, self.ds, self.feats = o, rt, ds, feats
        vgg = None
        if vgg_file is not None:
            from p2phd.nets.vgg import load_vgg19

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
        self.progress = Progress(o, self.run_dir, rt.is_main, self.spe, rt.world_size)
        self.epoch, self.epoch_step, self.step = 1, 0, 0
        self.seen: dict[int, list[str]] = {}  # epoch -> names this rank trained on
        # The last step of this process and whether it was logged/displayed: a run shorter than
        # --print_freq/--display_freq still ends with its last losses and picture.
        self.last: tuple | None = None
        self.last_logged = self.last_shown = False

    def start(self, state: Path | None) -> None:
        """A fresh run (stats cleared) or a resume from a saved state."""
        if state is None:
            self.trainer.set_phase(schedule.global_fixed(1, self.o.niter_fix_global))
        else:
            prog = saving.resume(self.trainer, state)
            self.epoch, self.epoch_step, self.step = prog["epoch"], prog["epoch_step"], prog["step"]
            cli.log(f"train: resuming {self.run_dir} at epoch {self.epoch}, step {self.step}")
        self.progress.start(self.step)

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
        try:
            while not self.done():
                self._epoch()
            self._finish()
        finally:
            self.progress.close()

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
        self.progress.open_epoch(self.epoch, self.epoch_step)
        try:
            for batch in data.iterate(self.ds, self.pre, batches, self.epoch, self.epoch_step):
                res = t.step(batch, self.step + 1)
                self.step += 1
                self.epoch_step += 1
                self.progress.stepped()
                if rt.world_size > 1 and len(self.ds) <= 64:  # logged at the end (small data only)
                    self.seen.setdefault(self.epoch, []).extend(batch["names"])
                if self._after_step(res, batch, lr):
                    break
        finally:
            self.progress.close_epoch()  # also on an error, so its message starts a clean line

    def _after_step(self, res: Any, batch: dict, lr: float) -> bool:
        """Log, display and save as the counters say; True at the end of the epoch or run."""
        o = self.o
        images = self.step * o.batch_size
        self.last = (res, batch, lr, self.epoch, self.epoch_step, self.step)
        self.last_logged = crossed(images, o.batch_size, o.print_freq)
        self.last_shown = crossed(images, o.batch_size, o.display_freq)
        if self.last_logged:
            self.progress.log(res, lr, self.epoch, self.epoch_step, self.step)
        if self.last_shown:
            self.progress.display(self.epoch, self.step, batch, res.fake)
        at_end = self.epoch_step >= self.spe
        at_max = bool(o.max_steps and self.step >= o.max_steps)
        if at_end:
            self.epoch, self.epoch_step = self.epoch + 1, 0
        if crossed(images, o.batch_size, o.save_latest_freq) or at_end or at_max:
            self._save(lr)
        finished = self.epoch - 1
        if at_end and o.save_epoch_freq and finished % o.save_epoch_freq == 0 and self.rt.is_main:
            saving.save_epoch_snapshot(self.run_dir, self.trainer, finished, self.step)
        return at_end or at_max

    def _save(self, lr: float) -> None:
        if not self.rt.is_main:
            return
        progress = {
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step,
            "images": self.step * self.o.batch_size,
            "fixed_global": bool(self.trainer.fixed_global),
            "lr": lr,
            "world_size": self.rt.world_size,
        }
        saving.save_state(self.run_dir, self.o, self.trainer, progress)

    def _finish(self) -> None:
        if self.last is not None:  # nothing stepped (an already finished run): nothing to add
            res, batch, lr, epoch, epoch_step, step = self.last
            if not self.last_logged:
                self.progress.log(res, lr, epoch, epoch_step, step)
            if not self.last_shown:
                self.progress.display(epoch, step, batch, res.fake)
        if self.rt.world_size > 1:
            who = f"rank {self.rt.rank}/{self.rt.world_size}"
            for epoch, names in sorted(self.seen.items()):
                cli.log(f"train: {who} epoch {epoch} samples: {','.join(names)}")
            cli.log(f"train: {who} parameter digest {parameter_digest(self.trainer.cells())}")


def l1_to_photos(G: Any, ds: Any, o: Any, E: Any = None) -> float:
    """Mean |G(label) - photo| over a dataset (no crop, no flip): a learning check for tests."""
    from mindspore import Tensor, ops

    from p2phd.nets.encoding import encode_condition

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
