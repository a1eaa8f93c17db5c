"""AdaptFormer (Chen et al. 2022): a ReLU bottleneck parallel to each block's MLP, ``scale · up(relu(down(x)))``
added to the MLP's output.

The branch reads the block's residual stream *before* the MLP's LayerNorm (``norm2``), as AdaptFormer's code
(``adaptmlp(x)`` with layer-norm option ``none``) and PETL_Vision's ``ft_mlp_ln: before`` do. As in PETL_Vision's
``parallel`` mode, drop-path acts on each branch with its own mask in training:
``x + dp(mlp(norm2(x))) + dp(branch(x))`` (``layers.AdaptedSite``, placement ``beside_unnormed``; the block's
``norm2``, ``ls2`` and ``drop_path2`` move into the wrapped MLP, whose frozen norm's keys become ``mlp.norm.*``).
AdaptFormer's own code applies no drop-path to the branch; in eval mode the three agree.

Init as AdaptFormer's ``lora`` option (PETL_Vision ``lora_kaiming``): down kaiming-uniform, up zero, so the model
starts as the backbone. Not mergeable (ReLU).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from peftlab.methods.adapter import DEFAULT_DROPOUT, bottleneck_identity, new_bottleneck
from peftlab.methods.base import MethodSpec, hparam, register
from peftlab.methods.layers import adapt_site, frozen_prefix_cache_point


@dataclass(frozen=True)
class AdaptFormerConfig:
    dim: int = hparam(16, "bottleneck width (the paper's grid: 4, 16, 32)", min=1)
    scale: float = hparam(0.1, "fixed factor on the branch's output (grid: 0.05, 0.1, 0.2)", min=0.0,
                          exclusive_min=True)
    dropout: float = hparam(DEFAULT_DROPOUT, "dropout after the activation (training only)", min=0.0, max=0.9)


def attach_adaptformer(model: nn.Module, config: AdaptFormerConfig) -> None:
    for block in model.blocks:
        fc1 = block.mlp.fc1
        branch = new_bottleneck(fc1.in_features, fc1.weight, config.dim, config.scale, "relu", "lora", config.dropout)
        adapt_site(block, "mlp", branch, "beside_unnormed")


register(MethodSpec(
    name="adaptformer",
    description="AdaptFormer: ReLU bottleneck parallel to the MLP, reading the block's pre-norm input",
    config_cls=AdaptFormerConfig,
    attach=attach_adaptformer,
    identity=bottleneck_identity,
    cache_point=frozen_prefix_cache_point,
))
