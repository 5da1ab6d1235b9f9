"""The one place that sets MindSpore up: device, graph mode, seeds, logs, CPU fix, msrun.

Import this (or anything in p2phd) before MindSpore: the package's __init__ sets
ONEDNN_MAX_CPU_ISA and GLOG_v, which MindSpore/oneDNN read only once.
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass

import numpy as np

from p2phd import __version__  # noqa: F401  (importing the package applies the env defaults)

# Environment variables msrun (and the manual MS_ROLE launch) set for every worker.
_MSRUN_VARS = ("MS_WORKER_NUM", "MS_ROLE")


@dataclass(frozen=True)
class Runtime:
    device_target: str
    graph_mode: bool
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes shared artifacts (checkpoints, manifests, pages)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def under_msrun() -> bool:
    """True in msrun's workers AND in its scheduler process: msrun starts the same script with
    MS_ROLE=MS_SCHED, and that process must call init() (which serves the cluster and never
    returns); if it skipped init() it would train alone and the workers would wait forever."""
    return (
        os.environ.get("MS_ROLE") in ("MS_WORKER", "MS_SCHED")
        and int(os.environ.get("MS_WORKER_NUM", "1")) > 1
    )


@dataclass(frozen=True)
class Place:
    """Who this process is among the workers msrun started, read from msrun's environment alone.

    msrun exports MS_WORKER_NUM (all workers of all nodes), MS_NODE_ID (the global rank; set when
    --node_rank is given or on one node) and DEVICE_ID (the local rank) to every worker, and starts
    one more copy of the command with MS_ROLE=MS_SCHED. Verbs that need no collective (render,
    precompute) read these instead of calling init(): no scheduler round trip (5-9 s here), and
    a dead peer cannot hang a collective.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    scheduler: bool = False

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def __str__(self) -> str:
        return f"rank {self.rank}/{self.world}"


def place() -> Place:
    """This process's rank, world size and local rank under msrun; Place() when run alone."""
    from p2phd.core.cli import UsageError

    world = int(os.environ.get("MS_WORKER_NUM", "1") or 1)
    role = os.environ.get("MS_ROLE")
    if role not in ("MS_WORKER", "MS_SCHED") or world <= 1:
        return Place()
    if role == "MS_SCHED":
        return Place(world=world, scheduler=True)
    node = os.environ.get("MS_NODE_ID", "")
    if not node.isdigit() or int(node) >= world:
        raise UsageError(
            f"under msrun with {world} workers but no rank in MS_NODE_ID ({node!r}): "
            "give msrun --node_rank on every node"
        )
    return Place(int(node), world, int(os.environ.get("DEVICE_ID", "0") or 0))


def setup(
    device_target: str = "CPU",
    pynative: bool = False,
    seed: int = 0,
    verbose: bool = False,
    data_parallel: bool = True,
) -> Runtime:
    """Configure MindSpore for this process and return who we are.

    Under msrun (MS_ROLE=MS_WORKER, MS_WORKER_NUM>1) communication is initialised and data
    parallelism with averaged gradients is set; callers must still reduce their functional
    gradients with nn.DistributedGradReducer (the context alone does not, mindspore-cpu.md §4).
    """
    if device_target == "CPU":
        os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    if verbose:
        os.environ["GLOG_v"] = os.environ.get("GLOG_v", "2")
    import mindspore as ms

    ms.set_context(mode=ms.PYNATIVE_MODE if pynative else ms.GRAPH_MODE)
    # Under msrun every worker takes the device of its local rank (the CPU has just one).
    device_id = place().local_rank if under_msrun() and device_target != "CPU" else None
    try:
        if device_id is None:
            ms.set_device(device_target)
        else:
            ms.set_device(device_target, device_id)
    except RuntimeError:
        # A kernel already ran in this process (a verb called in-process after other MindSpore
        # work, e.g. in the test suite): the device is fixed then; fine if it is the one asked.
        if ms.get_context("device_target") != device_target:
            raise
    rank, world = 0, 1
    if data_parallel and under_msrun():
        from mindspore.communication import get_group_size, get_rank, init

        init()
        rank, world = get_rank(), get_group_size()
        ms.set_auto_parallel_context(
            parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=world
        )
    seed_everything(seed)
    return Runtime(
        device_target=device_target, graph_mode=not pynative, rank=rank, world_size=world
    )


def seed_everything(seed: int) -> None:
    import mindspore as ms

    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)


def versions() -> dict[str, str]:
    """Package versions recorded in every manifest and checkpoint."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    # importlib.metadata scans site-packages on every call (~15 ms each): look up once.
    from importlib.metadata import PackageNotFoundError, version

    out = {"p2phd": __version__}
    for pkg in ("mindspore", "numpy", "h5py", "pillow", "scikit-learn", "joblib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
