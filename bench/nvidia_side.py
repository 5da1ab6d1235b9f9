"""One measurement of NVIDIA's pix2pixHD networks (PyTorch), for bench_vs_nvidia.py only.

    TORCH_PYTHON bench/nvidia_side.py NVIDIA_CHECKOUT KIND NETG NGF H W VGG NUM_D RUNS
    TORCH_PYTHON bench/nvidia_side.py NVIDIA_CHECKOUT weights NAME NVIDIA_OPTIONS OUT_FOLDER
    TORCH_PYTHON bench/nvidia_side.py NVIDIA_CHECKOUT frames G.pth NETG NGF WIDTH PRECISION RUNS \
        LABEL.png:INST.png ...

Imports ``models/networks.py`` from the NVIDIA checkout given and runs, on the CPU, batch 1:
- KIND train: NVIDIA's step (pix2pixHD_model.forward + train.py): one G forward, D on the detached
  fake and on the real photo (D loss), D on the fake (GAN loss), feature matching against the
  detached real features, VGG (if VGG is 1); then G backward + Adam, D backward + Adam.
- KIND infer: G forward under torch.inference_mode().
- weights: NVIDIA's random initialisation (seed 0) of the G that NVIDIA's options (its own
  parser, which also writes opt.txt) describe, saved as OUT_FOLDER/NAME/latest_net_G.pth: the
  checkpoint folder bin/import reads, so p2phd renders the same weights.
- frames: that .pth in NVIDIA's G (netG, ngf as label2city_512p/1024p, 35 labels + edge map),
  per frame as pix2pixHD_model.inference does it: the label map (NEAREST-resized to WIDTH as
  NVIDIA's loader does) one-hot encoded, the instance edge map, G forward; PRECISION fp32, or
  bf16 under torch.autocast (CPU). The frames cycle through the maps given.
The VGG19 is torchvision's layout with random weights (no download): same cost as the real one.
Prints one JSON line: median wall ms, median process CPU ms, first step s, peak RSS GB.
This file imports torch; it lives in bench/, which is not part of p2phd or its tests.
"""

import json
import sys
from pathlib import Path

from bench_vs_nvidia import measure  # the one timing loop of both sides (stdlib only)

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"  # NVIDIA-side helpers


def weights(checkout: str, name: str, nv_options: str, out: str) -> dict:
    """NVIDIA's G for the options given, NVIDIA's random initialisation, as a checkpoint folder."""
    sys.path.insert(0, checkout)
    sys.path.insert(0, str(FIXTURES))
    import torch

    torch.manual_seed(0)
    from make_fullres import nvidia_generator  # define_G with opt's architecture
    from make_nvidia_fixtures import nvidia_options  # NVIDIA's parser; writes opt.txt
    from models import networks

    Path(out).mkdir(parents=True, exist_ok=True)
    opt = nvidia_options(Path(checkout), name, nv_options, Path(out))
    G = nvidia_generator(networks, opt, opt.label_nc + (0 if opt.no_instance else 1))
    torch.save(G.state_dict(), Path(out) / name / "latest_net_G.pth")
    return {"folder": str(Path(out) / name), "params": sum(p.numel() for p in G.parameters())}


def frames(checkout: str, pth: str, netg: str, ngf: str, width: str, precision: str,
           runs: str, *maps: str) -> dict:  # fmt: skip
    """Per-frame time of NVIDIA's inference (encode + G) on real label maps, fp32 or bf16."""
    sys.path.insert(0, checkout)
    sys.path.insert(0, str(FIXTURES))
    import numpy as np
    import torch
    from make_fullres import nvidia_edges  # pix2pixHD_model.get_edges on the CPU
    from models import networks
    from PIL import Image

    torch.set_num_threads(2)
    label_nc = 35
    G = networks.define_G(label_nc + 1, 3, int(ngf), netg, 4, 9, 1, 3, "instance")
    G.load_state_dict(torch.load(pth, map_location="cpu", weights_only=False))
    G.eval()

    def read(path: str) -> torch.Tensor:
        img = Image.open(path)
        w = int(width)
        if img.width != w:  # NVIDIA's loader: scale_width with NEAREST for label and instance maps
            img = img.resize((w, round(img.height * w / img.width)), Image.NEAREST)
        return torch.from_numpy(np.array(img, np.int64))[None, None]

    pairs = [(read(a), read(b)) for a, b in (m.split(":") for m in maps)]
    counter = iter(range(1 << 30))

    def step():
        label, inst = pairs[next(counter) % len(pairs)]
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, precision == "bf16"):
            x = torch.zeros(1, label_nc, *label.shape[2:]).scatter_(1, label, 1.0)
            x = torch.cat([x, nvidia_edges(inst)], 1)
            return G(x).float().sum().item()

    return measure(step, int(runs))


def main(argv: list[str]) -> dict:
    if argv[1] == "weights":
        return weights(argv[0], *argv[2:])
    if argv[1] == "frames":
        return frames(argv[0], *argv[2:])
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
