"""pix2pixHD's losses as plain functions and a Cell, usable inside graph-mode value_and_grad.

``preds`` below is what the MultiscaleDiscriminator returns: a tuple over scales of tuples of
per-block outputs, the last being the patch map.

- ``gan_loss(preds, target_is_real, use_lsgan)``: MSE to 1/0 (LSGAN) or BCE (``--no_lsgan``; the
  D then ends in a sigmoid) on each scale's patch map, summed over scales (NVIDIA sums).
- ``d_loss(pred_fake, pred_real, use_lsgan)`` -> (loss_D, D_fake, D_real), loss_D = 0.5*(fake+real).
  ``pred_fake`` must come from D(cond, stop_gradient(fake)).
- ``feature_matching_loss(pred_fake, pred_real, n_layers_D, num_D, lambda_feat)``:
  sum over scales and intermediate outputs (patch map excluded) of
  lambda_feat * 4/(n_layers_D+1) / num_D * L1mean(fake_j, stop_gradient(real_j)).
- ``VGGLoss(vgg, lambda_feat)``: lambda_feat * sum_k w_k L1mean(vgg_k(x), stop_gradient(vgg_k(y)))
  with w = 1/32, 1/16, 1/8, 1/4, 1 on relu1_1..relu5_1; no input normalisation.

G's total is gan_loss(pred_fake_G, True) + feature matching + VGG, as NVIDIA's.
"""

import mindspore as ms
from mindspore import nn, ops

VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def _bce(pred, target: float):
    """torch BCELoss(mean) on probabilities, logs clamped at -100 as torch does."""
    log_p = ops.maximum(ops.log(pred), -100.0)
    log_q = ops.maximum(ops.log(1.0 - pred), -100.0)
    return -ops.mean(target * log_p + (1.0 - target) * log_q)


def _f32(x):
    """Losses are computed in float32 also when the nets run in float16 (--amp)."""
    return ops.cast(x, ms.float32)


def _single(pred, target: float, use_lsgan: bool):
    pred = _f32(pred)
    if use_lsgan:
        return ops.mean(ops.square(pred - target))
    return _bce(pred, target)


def gan_loss(preds, target_is_real: bool, use_lsgan: bool = True):
    target = 1.0 if target_is_real else 0.0
    loss = ops.zeros((), ms.float32)
    for scale in preds:
        loss = loss + _single(scale[-1], target, use_lsgan)
    return loss


def d_loss(pred_fake, pred_real, use_lsgan: bool = True):
    fake = gan_loss(pred_fake, False, use_lsgan)
    real = gan_loss(pred_real, True, use_lsgan)
    return 0.5 * (fake + real), fake, real


def feature_matching_loss(
    pred_fake, pred_real, n_layers_D: int, num_D: int, lambda_feat: float = 10.0
):
    weight = lambda_feat * (4.0 / (n_layers_D + 1)) / num_D
    loss = ops.zeros((), ms.float32)
    for i in range(len(pred_fake)):
        for j in range(len(pred_fake[i]) - 1):
            diff = _f32(pred_fake[i][j]) - ops.stop_gradient(_f32(pred_real[i][j]))
            loss = loss + weight * ops.mean(ops.abs(diff))
    return loss


class VGGLoss(nn.Cell):
    """Perceptual loss over a frozen VGG19Features (p2phd.nets.vgg.load_vgg19)."""

    def __init__(self, vgg: nn.Cell, lambda_feat: float = 10.0) -> None:
        super().__init__()
        self.vgg = vgg
        self.weights = tuple(lambda_feat * w for w in VGG_WEIGHTS)

    def construct(self, x, y):
        fx = self.vgg(x)
        fy = self.vgg(y)
        loss = ops.zeros((), ms.float32)
        for k in range(len(self.weights)):
            diff = _f32(fx[k]) - ops.stop_gradient(_f32(fy[k]))
            loss = loss + self.weights[k] * ops.mean(ops.abs(diff))
        return loss
