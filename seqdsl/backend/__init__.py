"""The torch side: build (spec -> nn.Module), emit (standalone source), export,
measure, verify, bench and calibrate. Importing this package does not load
torch; its modules do."""

__all__ = ["SeqModel", "build", "compile_model"]


def __getattr__(name: str):
    if name in __all__:
        from . import seqmodel   # lazy: torch loads here
        return getattr(seqmodel, name)
    raise AttributeError(f"module 'seqdsl.backend' has no attribute {name!r}")
