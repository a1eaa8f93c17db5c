"""AdaptFormer (Chen et al. 2022): a ReLU bottleneck parallel to each block's MLP, ``scale · up(relu(down(x)))``
added to the MLP's output.

The branch reads the block's residual stream *before* the MLP's LayerNorm (``norm2``), as AdaptFormer's code
(``adaptmlp(x)`` with layer-norm option ``none``) and PETL_Vision's ``ft_mlp_ln: before`` do. To feed it that
input without patching timm's ``Block.forward``, ``norm2`` moves inside the wrapped MLP: ``block.norm2`` becomes
the identity and ``block.mlp`` computes ``mlp(norm2(x)) + branch(x)`` (the frozen norm's state-dict keys move
to ``mlp.base.0.*``). The block's drop-path then acts on the sum, where PETL_Vision draws a second mask for the
branch (AdaptFormer itself applies none to it); in eval mode the functions are identical.

Init as AdaptFormer's ``lora`` option (PETL_Vision ``lora_kaiming``): down kaiming-uniform, up zero, so the model
starts as the backbone. Not mergeable (ReLU).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from peftlab.methods.adapter import DEFAULT_DROPOUT, bottleneck_identity, new_bottleneck
from peftlab.methods.base import MethodSpec, hparam, register
from peftlab.methods.layers import ParallelAdapter, frozen_prefix_cache_point


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
        block.mlp = ParallelAdapter(nn.Sequential(block.norm2, block.mlp), branch)
        block.norm2 = nn.Identity()


register(MethodSpec(
    name="adaptformer",
    description="AdaptFormer: ReLU bottleneck parallel to the MLP, reading the block's pre-norm input",
    config_cls=AdaptFormerConfig,
    attach=attach_adaptformer,
    identity=bottleneck_identity,
    cache_point=frozen_prefix_cache_point,
))
