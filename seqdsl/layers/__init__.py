"""The layer library: one registry, kind -> rule object.

Adding a layer: write its class (Args, infer_shape, count_params, cost,
lower) in a module here and add one line below.
"""
from __future__ import annotations

from .activation import Activation, Dropout, Scale
from .attention import Attention, CrossAttention
from .base import Layer, LayerArgs, LayerError
from .combine import Concat, Mul, Split
from .conv import Conv
from .dense import Linear, Mlp, Swiglu
from .embed import Embed, Posenc
from .emformer import Emformer
from .gated_deltanet import GatedDeltaNet
from .gla import Gla
from .join import Join
from .ln_lstm import LnLstm
from .mamba import Mamba
from .mamba2 import Mamba2
from .mingru import MinGru
from .mlstm import Mlstm
from .norm import Norm
from .pool import Pool
from .recurrent import Recurrent
from .retention import Retention
from .rglru import Rglru
from .shape_ops import Flatten, Permute, SpatialPool, TimePool, Unsqueeze

LAYERS: dict[str, Layer] = {
    "conv1d": Conv(1),
    "conv2d": Conv(2),
    "conv3d": Conv(3),
    "unsqueeze": Unsqueeze(),
    "flatten": Flatten(),
    "permute": Permute(),
    "maxpool1d": Pool("max", 1),
    "maxpool2d": Pool("max", 2),
    "maxpool3d": Pool("max", 3),
    "avgpool1d": Pool("avg", 1),
    "avgpool2d": Pool("avg", 2),
    "avgpool3d": Pool("avg", 3),
    "spatial_mean": SpatialPool("mean"),
    "spatial_max": SpatialPool("max"),
    "time_mean": TimePool("mean"),
    "time_last": TimePool("last"),
    "time_first": TimePool("first"),
    "embed": Embed(),
    "posenc": Posenc(),
    "linear": Linear(),
    "mlp": Mlp(),
    "swiglu": Swiglu("swiglu"),
    "geglu": Swiglu("geglu"),
    "layernorm": Norm("layernorm", 2),
    "rmsnorm": Norm("rmsnorm", 1),
    "batchnorm": Norm("batchnorm", 2),
    "relu": Activation("relu"),
    "gelu": Activation("gelu"),
    "gelu_tanh": Activation("gelu_tanh"),
    "silu": Activation("silu"),
    "tanh": Activation("tanh"),
    "sigmoid": Activation("sigmoid"),
    "squared_relu": Activation("squared_relu"),
    "hardtanh": Activation("hardtanh"),
    "log_softmax": Activation("log_softmax"),
    "softcap": Activation("softcap"),
    "glu": Activation("glu"),
    "dropout": Dropout(),
    "scale": Scale(),
    "mul": Mul(),
    "concat": Concat(),
    "split": Split(),
    "attention": Attention(),
    "cross_attention": CrossAttention(),
    "emformer": Emformer(),
    "join": Join(),
    "lstm": Recurrent("lstm"),
    "gru": Recurrent("gru"),
    "rnn": Recurrent("rnn"),
    "ln_lstm": LnLstm(),
    "mamba": Mamba(),
    "mamba2": Mamba2(),
    "rglru": Rglru(),
    "mingru": MinGru(),
    "gla": Gla(),
    "gated_deltanet": GatedDeltaNet(),
    "retention": Retention(),
    "mlstm": Mlstm(),
}

__all__ = ["LAYERS", "Layer", "LayerArgs", "LayerError"]
