"""pix2pixHD networks, losses and input encoding in MindSpore (NVIDIA's layers and names).

Builders take any object with the attribute names of ``p2phd.core.options.ModelOptions`` and
``DataOptions`` (plus, optionally, ``no_ganFeat_loss`` and ``load_features``):

- ``g_input_nc(o)``, ``d_input_nc(o)``: input channels (label_nc, or input_nc for label_nc 0;
  +1 edge unless no_instance; G: +feat_num with features; D: +output_nc, never features).
- ``build_generator(o)``: GlobalGenerator (netG global) or LocalEnhancer (netG local).
- ``build_discriminator(o)``: MultiscaleDiscriminator; sigmoid with no_lsgan; intermediate
  outputs unless ``no_ganFeat_loss`` is set and true.
- ``build_encoder(o, max_instances)``: the feature encoder with instance-wise pooling.
- ``count_parameters(cell)``, ``describe(o)`` -> {"G": n, "D": n[, "E": n]}.

Built cells have globally unique Parameter names (``netG.``/``netD.``/``netE.`` prefixes) so
optimizers over several nets do not clash; checkpoints use attribute paths (p2phd.core.checkpoint).
"""

from typing import Any

from mindspore import nn
from mindspore.nn.utils import no_init_parameters

from .discriminator import MultiscaleDiscriminator
from .encoder import Encoder
from .generator import GlobalGenerator, LocalEnhancer
from .layers import count_parameters, prefix_parameter_names

__all__ = [
    "g_input_nc",
    "d_input_nc",
    "build_generator",
    "build_discriminator",
    "build_encoder",
    "count_parameters",
    "describe",
    "label_channels",
    "uses_edge",
    "trains_encoder",
]


def label_channels(o: Any) -> int:
    return o.label_nc if o.label_nc > 0 else o.input_nc


def uses_edge(o: Any) -> bool:
    return not o.no_instance


def g_input_nc(o: Any) -> int:
    return label_channels(o) + int(uses_edge(o)) + (o.feat_num if o.use_features() else 0)


def d_input_nc(o: Any) -> int:
    return label_channels(o) + int(uses_edge(o)) + o.output_nc


def trains_encoder(o: Any) -> bool:
    """E is built and trained with features unless they are loaded from precomputed maps."""
    return bool(o.use_features()) and not getattr(o, "load_features", False)


def build_generator(o: Any) -> nn.Cell:
    if o.netG == "global":
        net = GlobalGenerator(
            g_input_nc(o), o.output_nc, o.ngf, o.n_downsample_global, o.n_blocks_global, o.norm
        )
    elif o.netG == "local":
        net = LocalEnhancer(
            g_input_nc(o),
            o.output_nc,
            o.ngf,
            o.n_downsample_global,
            o.n_blocks_global,
            o.n_local_enhancers,
            o.n_blocks_local,
            o.norm,
        )
    else:
        raise ValueError(f"unknown netG {o.netG!r} (global or local)")
    prefix_parameter_names(net, "netG")
    return net


def build_discriminator(o: Any) -> nn.Cell:
    net = MultiscaleDiscriminator(
        d_input_nc(o),
        o.ndf,
        o.n_layers_D,
        o.norm,
        use_sigmoid=bool(o.no_lsgan),
        num_D=o.num_D,
        intermediate=not getattr(o, "no_ganFeat_loss", False),
    )
    prefix_parameter_names(net, "netD")
    return net


def build_encoder(o: Any, max_instances: int) -> nn.Cell:
    """E maps the real image (output_nc channels) to feat_num channels, pooled per instance."""
    net = Encoder(o.output_nc, o.feat_num, o.nef, o.n_downsample_E, o.norm, max_instances)
    prefix_parameter_names(net, "netE")
    return net


def describe(o: Any) -> dict[str, int]:
    """Parameter count of each network the options would train.

    Built under no_init_parameters: shapes only, no weight memory (~0.1 s instead of ~4 s at 512p).
    """
    with no_init_parameters():
        counts = {
            "G": count_parameters(build_generator(o)),
            "D": count_parameters(build_discriminator(o)),
        }
        if trains_encoder(o):
            counts["E"] = count_parameters(build_encoder(o, 1))
    return counts
