"""The torch backend: ModelGraph -> nn.Module (docs/lowering.md). Imports torch."""
from .build import SeqModel, build, compile_model

__all__ = ["SeqModel", "build", "compile_model"]
