"""`bin/train --tensorboard`: TensorBoard event files under `<run>/tensorboard/`, through
tensorboardX (neither PyTorch nor TensorFlow; imported only when the option is on, rank 0 only).

What is written, at the global optimiser step of the stats.jsonl line or display it mirrors:
`loss/<name>` for every loss of stats.jsonl, `lr` (G and D share the schedule), `images_per_sec`
(the whole job's: batch_size x workers / seconds per step) every --print_freq images, and
`images/input_label`, `images/synthesized_image`, `images/real_image` every --display_freq.

Resume: a killed run may have written events after its last saved state; the resumed run redoes
those steps. Each (re)start opens a new event file that begins with TensorBoard's restart marker
(a SessionLog START at the first step it will write, tensorboardX's ``purge_step``): TensorBoard
then drops every earlier event at or after that step, so each step shows once, with the values
stats.jsonl keeps (it is cut back to the same step). The file name carries that first step, so
two starts within one second (the name's timestamp) never share a file and sort in order.
"""

from pathlib import Path
from typing import Any

import numpy as np

BOARD_DIR = "tensorboard"


class Board:
    def __init__(self, run_dir: Path, first_step: int) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(
            logdir=str(run_dir / BOARD_DIR),
            purge_step=first_step,
            filename_suffix=f".step{first_step:08d}",
        )

    def scalars(self, line: dict[str, Any], losses: tuple[str, ...]) -> None:
        """One stats.jsonl line (its ``step``, losses, ``lr``, ``images_per_sec``)."""
        step = int(line["step"])
        for name in losses:
            self.writer.add_scalar(f"loss/{name}", line[name], step)
        self.writer.add_scalar("lr", line["lr"], step)
        self.writer.add_scalar("images_per_sec", line["images_per_sec"], step)
        self.writer.flush()  # a killed run keeps what it logged (at most one line per flush)

    def images(self, step: int, pictures: dict[str, np.ndarray]) -> None:
        """The display's (H, W, 3) uint8 pictures by kind (webpage.KINDS)."""
        for kind, picture in pictures.items():
            self.writer.add_image(f"images/{kind}", picture, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
