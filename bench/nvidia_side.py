"""One measurement of NVIDIA's pix2pixHD networks (PyTorch), for bench_vs_nvidia.py only.

    TORCH_PYTHON bench/nvidia_side.py NVIDIA_CHECKOUT KIND NETG NGF H W VGG NUM_D RUNS

Imports ``models/networks.py`` from the NVIDIA checkout given and runs, on the CPU, batch 1:
- KIND train: NVIDIA's step (pix2pixHD_model.forward + train.py): one G forward, D on the detached
  fake and on the real photo (D loss), D on the fake (GAN loss), feature matching against the
  detached real features, VGG (if VGG is 1); then G backward + Adam, D backward + Adam.
- KIND infer: G forward under torch.inference_mode().
The VGG19 is torchvision's layout with random weights (no download): same cost as the real one.
Prints one JSON line: median wall ms, median process CPU ms, first step s, peak RSS GB.
This file imports torch; it lives in bench/, which is not part of p2phd or its tests.
"""

import json
import sys

from bench_vs_nvidia import measure  # the one timing loop of both sides (stdlib only)


def main(argv: list[str]) -> dict:
    checkout, kind, netg, ngf, h, w, use_vgg, num_d, runs = argv
    ngf, h, w, use_vgg, num_d, runs = int(ngf), int(h), int(w), int(use_vgg), int(num_d), int(runs)
    sys.path.insert(0, checkout)
    import torch
    import torchvision

    torch.set_num_threads(2)
    torch.manual_seed(0)
    from models import networks

    # No download: a same-shaped VGG19 with random weights; NVIDIA's losses call .cuda().
    vgg19 = torchvision.models.vgg19
    networks.models.vgg19 = lambda *a, **k: vgg19(weights=None)
    torch.nn.Module.cuda = lambda self, *a, **k: self

    label_nc, out_nc = 35, 3
    in_nc = label_nc + 1  # one-hot labels + edge map, as NVIDIA's encode_input gives G
    n_blocks_local = 3
    G = networks.define_G(in_nc, out_nc, ngf, netg, 4, 9, 1, n_blocks_local, "instance")
    rng = torch.Generator().manual_seed(0)
    cls = torch.randint(0, label_nc, (1, 1, h, w), generator=rng)
    label = torch.zeros(1, label_nc, h, w).scatter_(1, cls, 1.0)
    edge = (torch.rand(1, 1, h, w, generator=rng) > 0.9).float()
    cond = torch.cat((label, edge), 1)
    real = torch.rand(1, out_nc, h, w, generator=rng) * 2 - 1

    if kind == "infer":
        G.eval()

        def step():
            with torch.inference_mode():
                return G(cond).sum().item()
    else:
        D = networks.define_D(in_nc + out_nc, 64, 3, "instance", False, num_d, True)
        gan = networks.GANLoss(use_lsgan=True, tensor=torch.FloatTensor)
        vgg = networks.VGGLoss([]) if use_vgg else None
        l1 = torch.nn.L1Loss()
        opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        feat_w, d_w, lambda_feat = 4.0 / (3 + 1), 1.0 / num_d, 10.0

        def step():
            fake = G(cond)
            pred_fake_pool = D(torch.cat((cond, fake.detach()), 1))
            loss_d_fake = gan(pred_fake_pool, False)
            pred_real = D(torch.cat((cond, real), 1))
            loss_d_real = gan(pred_real, True)
            pred_fake = D(torch.cat((cond, fake), 1))
            loss_g = gan(pred_fake, True)
            for i in range(num_d):
                for j in range(len(pred_fake[i]) - 1):
                    diff = l1(pred_fake[i][j], pred_real[i][j].detach())
                    loss_g = loss_g + d_w * feat_w * diff * lambda_feat
            if vgg is not None:
                loss_g = loss_g + vgg(fake, real) * lambda_feat
            loss_d = (loss_d_fake + loss_d_real) * 0.5
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            return loss_g.item(), loss_d.item()

    return measure(step, runs)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
