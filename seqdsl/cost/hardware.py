"""Hardware profiles and the roofline latency model (COST_MODEL.md).

    time = Σ_ops max(FLOPs / (η_c·peak), bytes / (η_m·bandwidth)) + steps · step_latency

Bundled profiles (seqdsl/profiles/*.json) carry vendor peaks; `seqdsl
calibrate -o cpu.json` (seqdsl.backend.calibrate) measures this machine's GEMM throughput, memory
bandwidth and per-step floor and writes a profile of the same shape.
"""
from __future__ import annotations

import json
from pathlib import Path

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import UsageError

PROFILES = Path(__file__).resolve().parent.parent / "profiles"


class HardwareProfile(BaseModel):
    # NaN or infinity in a profile would turn every latency into nan/0: refused
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=False)

    name: str = Field(max_length=200)
    description: str = ""
    peak_flops: dict[str, Annotated[float, Field(gt=0)]] = Field(min_length=1, description="dtype -> FLOP/s (dense)")
    bandwidth: float = Field(gt=0, description="bytes/s of main memory")
    compute_efficiency: float = Field(0.6, gt=0, le=1)
    memory_efficiency: float = Field(0.8, gt=0, le=1)
    step_latency: float = Field(ge=0, description="seconds: floor of one sequential step (kernel launch, loop)")
    # the interconnect, for communication time under parallelism (seqdsl.cost.parallel): bytes/s one
    # GPU sends in one direction inside a node (NVLink) and to other nodes (InfiniBand); None: not known
    intra_node_bw: float | None = Field(None, gt=0, description="bytes/s per GPU, one direction, inside a node")
    inter_node_bw: float | None = Field(None, gt=0, description="bytes/s per GPU, one direction, across nodes")
    gpus_per_node: int | None = Field(None, gt=0, le=1024, description="GPUs sharing the fast intra-node links")
    step_latencies: dict[str, Annotated[float, Field(ge=0)]] = Field(
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
    return parse_profile(path)


MAX_PROFILE_BYTES = 1024 * 1024     # a calibrated profile is under 2 KB
MAX_PROFILE_DEPTH = 4               # {"peak_flops": {"float32": 1.0}} is depth 2


def _depth(v, limit: int) -> int:
    """Nesting depth of parsed JSON, iteratively (never past limit + 1)."""
    deepest, stack = 0, [(v, 1)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, (dict, list)):
            deepest = max(deepest, d)
            if d > limit:
                return d
            stack.extend((y, d + 1) for y in (x.values() if isinstance(x, dict) else x))
    return deepest


def parse_profile(path: Path) -> HardwareProfile:
    """Read and validate a profile JSON file; any problem is a UsageError
    naming the file (and the field, when one is wrong)."""
    def bad(why: str):
        return UsageError(f"{path} is not a valid hardware profile: {why}")
    try:
        size = path.stat().st_size
        if size > MAX_PROFILE_BYTES:
            raise bad(f"{size:,} bytes, past the limit of {MAX_PROFILE_BYTES:,} for a profile")
        raw = path.read_bytes()[:MAX_PROFILE_BYTES + 1]
    except OSError as exc:
        raise bad(f"cannot read it: {exc.strerror}") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise bad(f"past the limit of {MAX_PROFILE_BYTES:,} bytes for a profile")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("not UTF-8 text") from None

    def constant(name):
        raise ValueError(f"{name} is not a number a profile may hold")
    # nesting is bounded before json recurses into it: a bracket count caps the depth
    depth = 0
    deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_PROFILE_DEPTH:
                    raise bad(f"JSON nested more than {MAX_PROFILE_DEPTH} levels deep")
        elif ch in "]}":
            depth -= 1
    try:
        data = json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise bad(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise bad(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, got {type(data).__name__}")
    try:
        return HardwareProfile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise bad(f"field '{field}': {err['msg']}") from None
