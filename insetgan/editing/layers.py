"""The style layers of a generator: the affine transforms that turn a W+ row into a layer's styles.

Style layers are counted in synthesis order with toRGB excluded, as StyleSpace (Wu et al. 2021)
and StyleGAN-Human's ``style_vect_mean_<i>.pkl`` files count them. In a StyleGAN2 network layer
``i`` is the ``i``-th modulated 3×3 convolution (``b4.conv1``, ``b8.conv0``, ``b8.conv1``, …) and
is fed by W+ row ``i``; in a StyleGAN3 network it is ``L<i>`` (fed by row ``i + 1``, row 0
drives the input's transform).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from insetgan.networks.stylegan3 import is_stylegan3


@dataclass(frozen=True)
class StyleLayer:
    """One style layer: its module name under ``synthesis``, the W+ row that feeds it and its style width."""

    index: int
    name: str
    row: int
    width: int


@dataclass(frozen=True)
class GeneratorShape:
    """What direction files are checked against: W width, W+ rows, the style layers, the architecture."""

    w_dim: int
    num_ws: int
    layers: tuple[StyleLayer, ...]
    stylegan3: bool

    @property
    def widths(self) -> tuple[int, ...]:
        """The style width of each layer, in layer order."""
        return tuple(layer.width for layer in self.layers)


def _named_style_layers(G: nn.Module) -> list[tuple[str, nn.Module, int]]:
    """(name, synthesis layer, feeding row) of every style layer of ``G``, in synthesis order."""
    if is_stylegan3(G):
        names = G.synthesis.layer_names[:-1]  # the last layer is ToRGB
        return [(name, getattr(G.synthesis, name), i + 1) for i, name in enumerate(names)]
    out = []
    for block in G.synthesis.blocks():
        for conv in ("conv0", "conv1"):
            if hasattr(block, conv):
                out.append((f"b{block.resolution}.{conv}", getattr(block, conv), len(out)))
    return out


def style_affines(G: nn.Module) -> list[nn.Module]:
    """The affine (style) modules of ``G``'s style layers, in layer order (toRGB excluded)."""
    return [layer.affine for _, layer, _ in _named_style_layers(G)]


def generator_shape(G: nn.Module) -> GeneratorShape:
    """The shape of ``G`` that direction files must fit."""
    layers = tuple(StyleLayer(i, name, row, int(layer.affine.weight.shape[0]))
                   for i, (name, layer, row) in enumerate(_named_style_layers(G)))
    return GeneratorShape(int(G.w_dim), int(G.num_ws), layers, is_stylegan3(G))
