"""Networks, losses and the compiled training step of pix2pixHD (NVIDIA's semantics).

One step (``Trainer.step``), as NVIDIA's train.py does it:
1. G step: one generator forward (E first in the instance/label feature modes), then
   G_GAN = GAN(D(cond, fake), real), feature matching against D(cond, real) and VGG; the gradient
   is taken over the G optimiser's parameters only (G, plus E in feature modes; only the local
   enhancer (+E) during --niter_fix_global), and G is updated.
2. D step: D on the detached fake (through the image pool if --pool_size) and on the real photo,
   loss_D = 0.5 (D_fake + D_real), with D's pre-step weights (G's update does not touch D).
Both losses therefore use the pre-step weights, as NVIDIA's single forward does.

Speed (measured on the CPU target, MindSpore 2.10): GRAPH_MODE and a plain Python step around
``ms.value_and_grad`` Cells and the two Adam optimisers, not one ms.jit holding both.
Data parallel: gradients go through nn.DistributedGradReducer (mean) before each optimiser;
the parallel context alone does not average functional gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from p2phd.nets import build_discriminator, build_encoder, build_generator
from p2phd.nets.amp import LossScale, set_precision
from p2phd.nets.encoding import encode_condition
from p2phd.nets.layers import prefix_parameter_names
from p2phd.nets.losses import VGGLoss, d_loss, feature_matching_loss, gan_loss
from p2phd.training import schedule


class GLoss(nn.Cell):
    """construct(label, inst, pool, real, feat) -> (loss_G, G_GAN, G_GAN_Feat, G_VGG, fake)."""

    def __init__(
        self,
        o: Any,
        G: nn.Cell,
        D: nn.Cell,
        E: nn.Cell | None,
        vgg: nn.Cell | None,
        use_feat_input: bool,
    ) -> None:
        super().__init__()
        self.G, self.D, self.E, self.vgg = G, D, E, vgg
        self.label_nc, self.use_edge = o.label_nc, not o.no_instance
        self.use_lsgan = not o.no_lsgan
        self.gan_feat = not o.no_ganFeat_loss
        self.n_layers_D, self.num_D, self.lambda_feat = o.n_layers_D, o.num_D, float(o.lambda_feat)
        self.use_E = E is not None
        self.use_feat_input = use_feat_input
        self.use_vgg = vgg is not None
        self.amp = getattr(o, "amp", "O0") != "O0"
        self.zero = Tensor(0.0, ms.float32)

    def construct(self, label, inst, pool, real, feat):
        cond = encode_condition(label, inst, self.label_nc, self.use_edge)
        g_in = cond
        if self.use_E:
            g_in = ops.cat((cond, self.E(real, pool)), 1)
        elif self.use_feat_input:
            g_in = ops.cat((cond, feat), 1)
        fake = self.G(g_in)
        if self.amp:  # G ran in float16: D's input and the returned fake are float32
            fake = ops.cast(fake, ms.float32)
        pred_fake = self.D(ops.cat((cond, fake), 1))
        g_gan = gan_loss(pred_fake, True, self.use_lsgan)
        g_feat = self.zero
        if self.gan_feat:
            pred_real = self.D(ops.cat((cond, real), 1))
            g_feat = feature_matching_loss(
                pred_fake, pred_real, self.n_layers_D, self.num_D, self.lambda_feat
            )
        g_vgg = self.zero
        if self.use_vgg:
            g_vgg = self.vgg(fake, real)
        return g_gan + g_feat + g_vgg, g_gan, g_feat, g_vgg, fake


class Scaled(nn.Cell):
    """A loss Cell whose first output (the differentiated loss) is multiplied by a loss scale."""

    def __init__(self, loss: nn.Cell, scale: ms.Parameter) -> None:
        super().__init__(auto_prefix=False)  # keep the nets' Parameter names (optimiser moments)
        self.loss, self.scale = loss, scale

    def construct(self, *args):
        out = self.loss(*args)
        return (out[0] * self.scale,) + out[1:]


class DLoss(nn.Cell):
    """construct(label, inst, real, fake_label, fake_inst, fake) -> (loss_D, D_fake, D_real).

    The fake is detached; its condition is passed separately because the image pool may return
    an older fake together with the label it was made from."""

    def __init__(self, o: Any, D: nn.Cell) -> None:
        super().__init__()
        self.D = D
        self.label_nc, self.use_edge = o.label_nc, not o.no_instance
        self.use_lsgan = not o.no_lsgan
        # batch norm mixes the samples of a batch: keep NVIDIA's two separate passes there
        self.batched = o.norm == "instance"

    def construct(self, label, inst, real, fake_label, fake_inst, fake):
        cond = encode_condition(label, inst, self.label_nc, self.use_edge)
        fake_cond = encode_condition(fake_label, fake_inst, self.label_nc, self.use_edge)
        fake_in = ops.cat((fake_cond, ops.stop_gradient(fake)), 1)
        real_in = ops.cat((cond, real), 1)
        if not self.batched:
            return d_loss(self.D(fake_in), self.D(real_in), self.use_lsgan)
        # One D pass over [fakes; reals]: instance norm is per sample, so each half's outputs
        # equal its own pass, and each backward conv node (and its oneDNN scratchpad) exists once.
        n = real.shape[0]
        both = self.D(ops.cat((fake_in, real_in), 0))
        pred_fake, pred_real = (), ()
        for scale in both:
            fake_outs, real_outs = (), ()
            for out in scale:
                fake_outs = fake_outs + (out[:n],)
                real_outs = real_outs + (out[n:],)
            pred_fake = pred_fake + (fake_outs,)
            pred_real = pred_real + (real_outs,)
        return d_loss(pred_fake, pred_real, self.use_lsgan)


@dataclass
class StepResult:
    G_GAN: float
    G_GAN_Feat: float
    G_VGG: float
    D_real: float
    D_fake: float
    fake: np.ndarray  # (N, C, H, W) float32, the generator's output this step


class ImagePool:
    """NVIDIA's image pool over (label, inst, fake) triples, with a seeded RNG per step.

    Below pool_size, fakes are stored and returned; once full, each fake is swapped with a stored
    one with probability 1/2 (the stored one is returned). The condition travels with its fake so
    D sees consistent pairs, as NVIDIA pools cat(label, fake).
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self.items: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def query(self, label: np.ndarray, inst: np.ndarray, fake: np.ndarray, step: int):
        if self.size <= 0:
            return label, inst, fake
        rng = np.random.default_rng([self.seed, step, 0xF00D])
        out = []
        for b in range(fake.shape[0]):
            item = (label[b].copy(), inst[b].copy(), fake[b].copy())
            if len(self.items) < self.size:
                self.items.append(item)
                out.append(item)
            elif rng.random() > 0.5:
                k = int(rng.integers(0, self.size))
                out.append(self.items[k])
                self.items[k] = item
            else:
                out.append(item)
        return tuple(np.stack([o[i] for o in out]) for i in range(3))

    def state(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        for k, (lab, ins, fak) in enumerate(self.items):
            arrays[f"{k}.label"], arrays[f"{k}.inst"], arrays[f"{k}.fake"] = lab, ins, fak
        return arrays

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        n = len({key.split(".")[0] for key in arrays})
        self.items = [
            (arrays[f"{k}.label"], arrays[f"{k}.inst"], arrays[f"{k}.fake"]) for k in range(n)
        ]


def encoder_segments(o: Any, max_instances: int) -> int:
    """Segments the encoder pools over: classes for --label_feat, else the dataset's instances."""
    return max(1, o.label_nc if o.label_feat else max_instances)


class Trainer:
    """Owns G, D, (E), the losses, both optimisers and the compiled step Cells."""

    def __init__(
        self, o: Any, max_instances: int, world_size: int = 1, vgg: nn.Cell | None = None
    ) -> None:
        self.o, self.world_size = o, world_size
        self.G = build_generator(o)
        self.D = build_discriminator(o)
        self.E = None
        if o.use_features() and not o.load_features:
            self.E = build_encoder(o, encoder_segments(o, max_instances))
        self.vgg_loss = None
        if vgg is not None:
            self.vgg_loss = VGGLoss(vgg, o.lambda_feat)
        # --amp: nets in float16 (norms and losses float32), a dynamic loss scale per optimiser.
        self.amp = getattr(o, "amp", "O0")
        self.scale_g = self.scale_d = None
        if self.amp != "O0":
            for net in [*self.cells().values(), vgg]:
                if net is not None:
                    set_precision(net, self.amp)
            self.scale_g, self.scale_d = LossScale(), LossScale()
        self.g_loss = GLoss(o, self.G, self.D, self.E, self.vgg_loss, bool(o.load_features))
        self.d_loss = DLoss(o, self.D)
        # Wrapping the nets in the loss Cells renamed their Parameters after the attribute path
        # (G.model.1.weight); restore the builders' unique names, which the optimiser moments
        # (and so the saved training state) are named after.
        for key, cell in self.cells().items():
            prefix_parameter_names(cell, key)
        # Cells start in inference mode; --norm batch must normalise with batch statistics.
        self.g_loss.set_train(True)
        self.d_loss.set_train(True)
        self.optD = self._adam(self.D.trainable_params())
        self.grad_d = ms.value_and_grad(
            self._scaled(self.d_loss, self.scale_d), None, self.optD.parameters, has_aux=True
        )
        self.reduce_d = self._reducer(self.optD)
        self.fixed_global: bool | None = None
        self.optG = None
        self.pool = ImagePool(o.pool_size, o.seed)
        self._dummy_feat = Tensor(np.zeros((1,), np.float32))

    # -- construction ------------------------------------------------------------------------
    def cells(self) -> dict[str, nn.Cell]:
        cells = {"netG": self.G, "netD": self.D}
        if self.E is not None:
            cells["netE"] = self.E
        return cells

    def inference_cells(self) -> dict[str, nn.Cell]:
        return {k: v for k, v in self.cells().items() if k != "netD"}

    def _adam(self, params: list) -> nn.Adam:
        return nn.Adam(
            params,
            learning_rate=float(self.o.lr),
            beta1=float(self.o.beta1),
            beta2=float(self.o.beta2),
        )

    @staticmethod
    def _scaled(loss: nn.Cell, scale: LossScale | None) -> nn.Cell:
        return loss if scale is None else Scaled(loss, scale.value)

    def _update(self, opt: nn.Optimizer, grads: tuple, reduce, scale: LossScale | None) -> None:
        """Average over ranks, undo the loss scale (skipping non-finite steps), apply Adam."""
        if reduce is not None:
            grads = reduce(grads)
        if scale is not None:
            grads, finite = scale.unscale(grads)
            if not finite:
                return
        opt(grads)

    def _reducer(self, opt: nn.Optimizer):
        if self.world_size <= 1:
            return None
        return nn.DistributedGradReducer(opt.parameters, mean=True, degree=self.world_size)

    def g_parameters(self, fixed_global: bool) -> list:
        """G's trainable parameters (only the outermost enhancer while the global part is fixed)
        plus E's."""
        prefix = schedule.local_prefix(self.o.n_local_enhancers)
        params = [
            p
            for name, p in self.G.parameters_and_names()
            if p.requires_grad and (not fixed_global or name.startswith(prefix))
        ]
        if self.E is not None:
            params += list(self.E.trainable_params())
        return params

    def set_phase(self, fixed_global: bool) -> bool:
        """(Re)build the G optimiser for the phase; a fresh Adam when the phase changes.

        Returns True if a new optimiser was made."""
        if self.optG is not None and self.fixed_global == fixed_global:
            return False
        self.fixed_global = fixed_global
        self.optG = self._adam(self.g_parameters(fixed_global))
        self.grad_g = ms.value_and_grad(
            self._scaled(self.g_loss, self.scale_g), None, self.optG.parameters, has_aux=True
        )
        self.reduce_g = self._reducer(self.optG)
        return True

    def set_lr(self, lr: float) -> None:
        value = Tensor(np.float32(lr))
        self.optG.learning_rate.set_data(value)
        self.optD.learning_rate.set_data(value)

    def lr(self) -> float:
        return float(self.optG.learning_rate.asnumpy())

    # -- one step ----------------------------------------------------------------------------
    def step(self, batch: dict[str, Any], step: int) -> StepResult:
        """One G update and one D update on a collated batch (p2phd.data.collate)."""
        label = Tensor(batch["label"])
        inst = Tensor(batch["inst"])
        pool = Tensor(batch["pool"])
        real = Tensor(batch["photo"])
        feat = Tensor(batch["feat"]) if batch.get("feat") is not None else self._dummy_feat
        (_, g_gan, g_feat, g_vgg, fake), grads = self.grad_g(label, inst, pool, real, feat)
        self._update(self.optG, grads, self.reduce_g, self.scale_g)
        fake_np = fake.asnumpy()
        d_label, d_inst, d_fake = label, inst, fake
        if self.o.pool_size > 0:
            lab, ins, fak = self.pool.query(batch["label"], batch["inst"], fake_np, step)
            d_label, d_inst, d_fake = Tensor(lab), Tensor(ins), Tensor(fak)
        (_, loss_fake, loss_real), grads_d = self.grad_d(label, inst, real, d_label, d_inst, d_fake)
        self._update(self.optD, grads_d, self.reduce_d, self.scale_d)
        return StepResult(
            float(g_gan.asnumpy()),
            float(g_feat.asnumpy()),
            float(g_vgg.asnumpy()),
            float(loss_real.asnumpy()),
            float(loss_fake.asnumpy()),
            fake_np,
        )

    # -- state -------------------------------------------------------------------------------
    def state_cells(self) -> dict[str, nn.Cell]:
        """Everything resume needs, for p2phd.core.checkpoint.save/load: the nets by attribute path,
        the optimisers by their own state (moments, step counts, beta powers, lr)."""
        return {**self.cells(), "optG": self.optG, "optD": self.optD}


def optimizer_state(opt: nn.Optimizer) -> list:
    """The optimiser's own Parameters (moments, step count, beta powers, lr), not the net's."""
    net_ids = {id(p) for p in opt.parameters}
    return [p for _, p in opt.parameters_and_names() if id(p) not in net_ids]


def parameter_digest(cells: dict[str, nn.Cell]) -> str:
    """sha256 over every parameter's bytes in name order (equal digests = bitwise-equal nets)."""
    import hashlib

    h = hashlib.sha256()
    for key in sorted(cells):
        for name, p in sorted(cells[key].parameters_and_names(), key=lambda t: t[0]):
            h.update(f"{key}.{name}".encode())
            h.update(np.ascontiguousarray(p.asnumpy()).tobytes())
    return h.hexdigest()
