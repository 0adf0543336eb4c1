"""Memory traffic and bandwidth: the floor under an optimizer step's time.

:data:`TRAFFIC` says which tensors each optimizer's update must read and write per
parameter (derived from descend/optim); :func:`measure_bandwidth` times a STREAM-like
triad on the device; bytes over bandwidth is the time no implementation can beat by
much, which ``descend bench`` reports each result against.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch

Shape = tuple[int, ...]
ELEMENT_BYTES = 4  # every benchmarked tensor is float32


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------
# Bandwidth floors
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """The per-element tensors one update must read and write, float32, at the defaults
    benchmarked here. A name listed twice is streamed twice: a reduction over the whole
    tensor (a norm, a row mean) must finish before the elements it scales can be
    written, so the tensor is read again. 0-d state (step counts) and state of size
    O(rows + columns) are not counted."""

    reads: tuple[str, ...]
    writes: tuple[str, ...]
    derivation: str

    @property
    def bytes_per_param(self) -> int:
        return ELEMENT_BYTES * (len(self.reads) + len(self.writes))


_ADAM_LIKE = (("param", "grad", "exp_avg", "exp_avg_sq"), ("param", "exp_avg", "exp_avg_sq"))

TRAFFIC: dict[str, Traffic] = {
    "SGD": Traffic(
        ("param", "grad", "momentum_buffer"),
        ("param", "momentum_buffer"),
        "b = 0.9 b + g; p -= lr b",
    ),
    "Adam": Traffic(
        *_ADAM_LIKE, "m, v = lerp(m, g), beta2 v + (1 - beta2) g^2; p -= c m / (sqrt(v) c' + eps)"
    ),
    "AdamW": Traffic(*_ADAM_LIKE, "Adam's; the decoupled decay p *= 1 - lr wd joins the same pass"),
    "Adadelta": Traffic(
        ("param", "grad", "square_avg", "acc_delta"),
        ("param", "square_avg", "acc_delta"),
        "v = rho v + (1 - rho) g^2; d = sqrt(u + eps) / sqrt(v + eps) g; "
        "u = rho u + (1 - rho) d^2; p -= lr d",
    ),
    # Tensors of two or more dimensions (factored second moment); see VECTOR_TRAFFIC
    "Adafactor": Traffic(
        ("param", "grad", "grad", "param", "grad"),
        ("param",),
        "pass 1 reads p (its RMS scales the step) and g (row and column means of g^2); "
        "pass 2 reads g (the RMS of the update clips it); pass 3 reads p and g, writes p",
    ),
    "Adagrad": Traffic(
        ("param", "grad", "sum"), ("param", "sum"), "s += g^2; p -= lr g / (sqrt(s) + eps)"
    ),
    "Adamax": Traffic(
        ("param", "grad", "exp_avg", "exp_inf"),
        ("param", "exp_avg", "exp_inf"),
        "m = lerp(m, g); u = max(beta2 u, |g| + eps); p -= c m / u",
    ),
    "ASGD": Traffic(
        ("param", "grad"),
        ("param", "ax"),
        "p = (1 - lambd eta) p - eta g; ax = p (mu = 1 until step t0 = 1e6: "
        "ax is written, not read)",
    ),
    "NAdam": Traffic(
        *_ADAM_LIKE, "Adam's moments; p -= a g / d + b m / d with d = sqrt(v) c + eps"
    ),
    "RAdam": Traffic(*_ADAM_LIKE, "Adam's moments (v is updated even in the first 5 steps)"),
    "RMSprop": Traffic(
        ("param", "grad", "square_avg"),
        ("param", "square_avg"),
        "v = alpha v + (1 - alpha) g^2; p -= lr g / (sqrt(v) + eps) (momentum 0, not centered)",
    ),
    "Rprop": Traffic(
        ("param", "grad", "prev", "step_size"),
        ("param", "prev", "step_size"),
        "s *= eta(sign(g prev)), clamped; g' = 0 where the sign flipped; "
        "p -= sign(g') s; prev = g'",
    ),
}

# Tensors of fewer than two dimensions, where they differ (Adafactor keeps a full
# second moment for them).
VECTOR_TRAFFIC: dict[str, Traffic] = {
    "Adafactor": Traffic(
        ("param", "grad", "variance", "param", "grad", "variance"),
        ("variance", "param"),
        "pass 1 reads p (its RMS), g and v, writes v and sums the squared update; "
        "pass 2 reads p, g and v, writes p",
    ),
}


def traffic(optimizer: str, shape: Shape) -> Traffic:
    """The memory traffic of ``optimizer``'s update of one tensor of ``shape``."""
    if len(shape) < 2 and optimizer in VECTOR_TRAFFIC:
        return VECTOR_TRAFFIC[optimizer]
    return TRAFFIC[optimizer]


def floor_bytes(optimizer: str, shapes: list[Shape]) -> int:
    """Bytes one step of ``optimizer`` must move over tensors of ``shapes``."""
    return sum(math.prod(shape) * traffic(optimizer, shape).bytes_per_param for shape in shapes)


# --------------------------------------------------------------------------------------
# Memory bandwidth
# --------------------------------------------------------------------------------------

# Bytes of each of the triad's three arrays (tests make them small).
TRIAD_BYTES = {"cpu": 256 * 2**20, "cuda": 2**30}
TRIAD_SCALAR = 3.0


def triad(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, scalar: float) -> torch.Tensor:
    """STREAM's triad, ``a = b + scalar * c``, in place in ``a``."""
    return torch.add(b, c, alpha=scalar, out=a)


@dataclass
class Bandwidth:
    """The triad's bandwidth: bytes counted / median time.

    ``gb_per_s``, which the floors use, counts the bytes the memory actually moves: on
    CPU 16 per element, since a CPU cache reads a line before it is written
    (write-allocate), so ``a``'s lines are read as well as written; on CUDA 12, as GPUs
    write whole lines without reading them. ``stream_gb_per_s`` counts 12 everywhere
    (STREAM's convention: read b, read c, write a). An optimizer writes only tensors it
    has just read (p, its state), which costs nothing extra, so only the first figure is
    comparable with the floors' byte counts."""

    gb_per_s: float
    stream_gb_per_s: float
    array_bytes: int
    repeats: int
    samples_ms: list[float]
    verified: bool
    arrays: int = 3
    bytes_per_element: int = 4 * ELEMENT_BYTES
    write_allocate_counted: bool = True

    @property
    def bytes_per_s(self) -> float:
        return self.gb_per_s * 1e9


def measure_bandwidth(device: torch.device, repeats: int = 10) -> Bandwidth:
    """Time the triad on three float32 arrays of :data:`TRIAD_BYTES` on ``device``; the
    median of ``repeats`` runs after an untimed one (and a check of its result)."""
    array_bytes = TRIAD_BYTES[device.type]
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        array_bytes = min(array_bytes, free // 8)
    n = array_bytes // ELEMENT_BYTES
    a = torch.empty(n, device=device)
    b = torch.full((n,), 1.0, device=device)
    c = torch.full((n,), 2.0, device=device)
    triad(a, b, c, TRIAD_SCALAR)  # untimed: first touch of a's pages
    samples = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        triad(a, b, c, TRIAD_SCALAR)
        _synchronize(device)
        samples.append((time.perf_counter() - start) * 1e3)
    verified = bool((a == 1.0 + TRIAD_SCALAR * 2.0).all())
    seconds = statistics.median(samples) / 1e3
    del a, b, c
    write_allocate = device.type == "cpu"
    per_element = (4 if write_allocate else 3) * ELEMENT_BYTES
    return Bandwidth(
        gb_per_s=per_element * n / seconds / 1e9,
        stream_gb_per_s=3 * ELEMENT_BYTES * n / seconds / 1e9,
        array_bytes=n * ELEMENT_BYTES,
        repeats=repeats,
        samples_ms=samples,
        verified=verified,
        bytes_per_element=per_element,
        write_allocate_counted=write_allocate,
    )
