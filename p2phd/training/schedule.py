"""Learning-rate schedule and the niter_fix_global phase, with NVIDIA's semantics.

Epochs are numbered from 1 as in NVIDIA's train.py. NVIDIA keeps lr for epochs 1..niter+1 and,
at the end of every epoch e > niter, subtracts lr/niter_decay, so:

    lr(e) = lr                                         for e <= niter + 1
    lr(e) = lr * (1 - (e - niter - 1) / niter_decay)   after that

Epoch niter+niter_decay (the last) trains at lr/niter_decay, never at 0. (The MindSpore port's
per-step array is one epoch ahead and ends at 0; its niter_fix_global restart also shifts the
decay by niter_fix_global epochs. Here the schedule depends only on the epoch, so a fresh
optimiser after the fixed phase continues it where it is.)
"""


def total_epochs(niter: int, niter_decay: int) -> int:
    return niter + niter_decay


def lr_at(epoch: int, lr: float, niter: int, niter_decay: int) -> float:
    """Learning rate used during 1-based `epoch`."""
    if epoch <= niter + 1 or niter_decay <= 0:
        return float(lr)
    return float(lr) * max(0.0, 1.0 - (epoch - niter - 1) / niter_decay)


def global_fixed(epoch: int, niter_fix_global: int) -> bool:
    """True while only the local enhancer (+E) trains: epochs 1..niter_fix_global."""
    return niter_fix_global > 0 and epoch <= niter_fix_global


def local_prefix(n_local_enhancers: int) -> str:
    """Parameters NVIDIA trains during the fixed phase: the outermost enhancer, `model<n>_*`."""
    return f"model{n_local_enhancers}"
