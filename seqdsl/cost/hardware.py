"""Hardware profiles and the roofline latency model (COST_MODEL.md).

    time = Σ_ops max(FLOPs / (η_c·peak), bytes / (η_m·bandwidth)) + steps · step_latency

Bundled profiles (seqdsl/profiles/*.json) carry vendor peaks; `seqdsl
calibrate -o cpu.json` (seqdsl.backend.calibrate) measures this machine's GEMM throughput, memory
bandwidth and per-step floor and writes a profile of the same shape.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import UsageError

PROFILES = Path(__file__).resolve().parent.parent / "profiles"


class HardwareProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    peak_flops: dict[str, float] = Field(description="dtype -> FLOP/s (dense)")
    bandwidth: float = Field(gt=0, description="bytes/s of main memory")
    compute_efficiency: float = Field(0.6, gt=0, le=1)
    memory_efficiency: float = Field(0.8, gt=0, le=1)
    step_latency: float = Field(ge=0, description="seconds: floor of one sequential step (kernel launch, loop)")
    step_latencies: dict[str, float] = Field(
        default_factory=dict,
        description="per-kind floors overriding step_latency: 'lstm', 'gru', 'rnn' (forward step) and "
                    "'lstm.backward', ... (one backward-through-time step); a CPU runs GRU and RNN "
                    "step by step in ATen but the LSTM as one fused oneDNN kernel")

    def step_floor(self, key: str = "") -> float:
        """The per-step floor for `key` ('gru', 'gru.backward', ...): its own
        figure, else the forward kind's, else step_latency."""
        if key in self.step_latencies:
            return self.step_latencies[key]
        base = key.removesuffix(".backward")
        return self.step_latencies.get(base, self.step_latency)

    def peak(self, dtype: str) -> float:
        if dtype in self.peak_flops:
            return self.peak_flops[dtype]
        return min(self.peak_flops.values())

    def op_time(self, flops: int, bytes_moved: int, dtype: str) -> float:
        """Roofline time of one op: bound by compute or by memory traffic."""
        return max(flops / (self.compute_efficiency * self.peak(dtype)),
                   bytes_moved / (self.memory_efficiency * self.bandwidth))

    def latency(self, ops, dtype: str) -> float:
        """ops: iterable of (flops, bytes_moved, sequential_steps)."""
        return sum(self.op_time(f, b, dtype) + s * self.step_latency for f, b, s in ops)


def bundled_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.json"))


def load_profile(name_or_path: str) -> HardwareProfile:
    """A bundled profile by name (h100, h200, a100, cpu) or a JSON file."""
    path = PROFILES / f"{name_or_path}.json"
    if not path.is_file():
        path = Path(name_or_path)
    if not path.is_file():
        raise UsageError(f"unknown hardware profile '{name_or_path}': use one of "
                         f"{', '.join(bundled_profiles())} or a JSON file from `seqdsl calibrate`")
    try:
        return HardwareProfile.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(f"{path} is not a valid hardware profile: {first}") from None
