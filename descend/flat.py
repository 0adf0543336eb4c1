"""Flat parameter buffers: one contiguous tensor per device and dtype, so that one kernel
updates every parameter, however many there are.

:func:`flatten` moves the parameters of a model (or any list of tensors) into one buffer
per (device, dtype): each parameter, and its ``.grad``, becomes a view into it. Autograd
accumulates into the views as usual. A descend optimizer whose update is elementwise
(SGD, Adam, AdamW, Adamax, NAdam, RAdam, RMSprop, Adadelta, Adagrad, ASGD, Rprop) then
updates each buffer as a single tensor, with its state in flat buffers too: the state
that ``state_dict()`` shows per parameter is made of views into them, so checkpoints keep
torch's format and load either way. The cost per step no longer grows with the number of
tensors::

    model = build_model()
    descend.flatten(model)                  # before creating the optimizer, or after
    optimizer = descend.AdamW(model.parameters(), lr=1e-3)
    for batch in loader:
        optimizer.zero_grad()               # zeroes the flat gradient, one kernel
        loss_fn(model(batch)).backward()
        optimizer.step()                    # one update per buffer

What changes:

- ``optimizer.zero_grad()`` zeroes the gradients in place instead of setting them to
  None, so every flattened parameter takes part in every step (as with torch's
  ``zero_grad(set_to_none=False)``); a parameter whose gradient is zero still moves
  where its optimizer has momentum. Frozen parameters (``requires_grad=False``) are not
  flattened; one frozen after flattening keeps a gradient of None and its buffer is
  updated tensor by tensor while it stays frozen.
- A gradient set to None or replaced (``model.zero_grad()``, ``p.grad = g``) is copied
  back into the buffer at the next step, which costs one copy per such tensor.
- Parameters keep their shapes but become contiguous (a channels-last weight becomes
  contiguous). In float32 and float64 a flattened model computes bitwise what it did
  before; in float16 and bfloat16 torch's CPU kernels may round a tensor's last few
  elements differently once they sit inside a larger buffer.
- The weights of embeddings with ``sparse=True`` are not flattened (their sparse
  gradients would become dense).
- Another optimizer's ``zero_grad`` zeroes only its own parameters' gradients; one
  kernel zeroes a whole buffer only when the optimizer holds all its parameters.
- ``optimizer.state.clear()`` (or a new ``state``) starts the flat state afresh;
  replacing one entry of one parameter's state by hand is not noticed while the buffer is
  updated whole.
- Moving or casting a parameter afterwards (``model.to(...)``, ``p.data = ...``)
  detaches it from its buffer; the optimizer notices, warns once, and goes back to
  updating tensor by tensor. Call :func:`flatten` again after such a change.

On CPU, a buffer of large tensors (more than 16,384 elements each on average) is still
updated tensor by tensor, through the views: the eager update makes several passes over
its data, which stay in cache one tensor at a time but not a whole buffer at a time.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

FLAT_ATTRIBUTE = "_descend_flat"
"""The attribute of a flattened parameter that names its :class:`FlatBuffer`."""
ALIGNMENT = 64
"""Bytes each view's start is aligned to, as torch's CPU allocator aligns a tensor, so a
float32 or float64 parameter computes the same in its buffer as alone (BLAS kernels
depend on alignment);
the gaps are zeros and stay zeros under every elementwise update."""
FLAT_PROXY = object()
_generation = 0
"""How many times :func:`flatten` ran: an optimizer re-reads its parameters' buffers
when it changes."""


def generation() -> int:
    """How many times :func:`flatten` has run in this process."""
    return _generation


"""The value of :data:`FLAT_ATTRIBUTE` on a buffer's :attr:`FlatBuffer.proxy`."""


class FlatBuffer:
    """The parameters of one (device, dtype), as views into :attr:`data`.

    Attributes:
        data: the contiguous 1-D buffer holding every parameter, each starting at a
            multiple of :data:`ALIGNMENT` bytes (zeros between them).
        grad: the contiguous 1-D buffer holding every gradient.
        params: the parameters, in buffer order.
        views: ``views[i]`` is ``params[i]``'s view into ``data`` (what its ``.data`` is).
        grad_views: ``grad_views[i]`` is ``params[i]``'s view into ``grad``.
        state: the optimizer state of the whole buffer, while an optimizer uses it: flat
            tensors for per-element state, shared 0-d tensors or numbers for the rest.
    """

    def __init__(self, params: list[Tensor]) -> None:
        first = params[0]
        align = max(1, ALIGNMENT // first.element_size())
        starts, total = [], 0
        for param in params:
            starts.append(total)
            total += -(-param.numel() // align) * align  # rounded up: each view aligned
        self.params = params
        self.data = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.offsets: list[int] = []
        self.views: list[Tensor] = []
        self.grad_views: list[Tensor] = []
        self.state: dict[str, Any] = {}
        self.owner: object | None = None  # the token of the optimizer whose state this is
        self.broken = False  # a parameter left the buffer (moved or cast)
        self.replaced = False  # flatten() put its parameters into a newer buffer
        with torch.no_grad():
            for param, offset in zip(params, starts):
                n = param.numel()
                view = self.data[offset : offset + n].view(param.shape)
                view.copy_(param)
                grad_view = self.grad[offset : offset + n].view(param.shape)
                if param.grad is not None:
                    grad_view.copy_(param.grad)
                param.data = view
                param.grad = grad_view
                setattr(param, FLAT_ATTRIBUTE, self)
                self.offsets.append(offset)
                self.views.append(view)
                self.grad_views.append(grad_view)
        self.pointers = [view.data_ptr() for view in self.views]
        self.proxy = self.data.detach()
        """The whole buffer as one tensor, with :attr:`grad` as its gradient: what the
        optimizer updates."""
        self.proxy.grad = self.grad
        setattr(self.proxy, FLAT_ATTRIBUTE, FLAT_PROXY)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def mean_numel(self) -> float:
        """The mean number of elements of its parameters."""
        return sum(p.numel() for p in self.params) / len(self.params)

    def __repr__(self) -> str:
        return (
            f"FlatBuffer({len(self.params)} tensors, {self.data.numel()} elements, "
            f"{self.data.dtype}, {self.data.device})"
        )

    # ----------------------------------------------------------------------------------

    def attached(self) -> bool:
        """Whether the buffer can be updated whole: every parameter still lives in
        :attr:`data` and requires a gradient. Warns once when a parameter left it."""
        if self.broken or self.replaced:
            return False
        for param, pointer in zip(self.params, self.pointers):
            if param.data_ptr() != pointer:
                self.broken = True
                warnings.warn(
                    f"a parameter of shape {tuple(param.shape)} no longer lives in its flat "
                    "buffer (moved or cast after descend.flatten?); its optimizer updates "
                    "tensor by tensor from now on; call descend.flatten again to restore the "
                    "flat update",
                    stacklevel=4,
                )
                return False
            if not param.requires_grad:
                return False  # frozen: its gradient must stay None
        return True

    def gather_grads(self) -> None:
        """Make every ``.grad`` its view again, copying (or zeroing) what changed."""
        for param, view in zip(self.params, self.grad_views):
            grad = param.grad
            if grad is view:
                continue
            if grad is None:
                view.zero_()
            else:
                view.copy_(grad.to_dense() if grad.is_sparse else grad)
            param.grad = view

    def zero_grad(self) -> None:
        """Zero every gradient with one kernel, keeping the views (a frozen parameter's
        gradient becomes None)."""
        self.grad.zero_()
        for param, view in zip(self.params, self.grad_views):
            if not param.requires_grad:
                param.grad = None
            elif param.grad is not view:
                param.grad = view


def flatten(params: torch.nn.Module | Iterable[Tensor]) -> list[FlatBuffer]:
    """Move the parameters of a module (or the given tensors) into one contiguous buffer
    per (device, dtype); each parameter and its gradient become views into it.

    Returns the buffers, in the order their first parameter appears. Tensors that do not
    require a gradient, are sparse, or are not floating point or complex are left alone,
    and so are duplicates and, in a module, the weights of embeddings with
    ``sparse=True``. Values and gradients are kept. Flattening again (after moving the
    model, say) makes new buffers; an optimizer gathers its state for them at its next
    step.
    """
    global _generation
    sparse: set[int] = set()
    if isinstance(params, torch.nn.Module):
        for module in params.modules():
            if isinstance(module, (torch.nn.Embedding, torch.nn.EmbeddingBag)) and module.sparse:
                sparse.add(id(module.weight))
        tensors = list(params.parameters())
    elif isinstance(params, Tensor):
        raise TypeError("flatten takes a module or an iterable of tensors, got one tensor")
    else:
        tensors = list(params)
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    seen: set[int] = set()
    for tensor in tensors:
        if not isinstance(tensor, Tensor):
            raise TypeError(f"flatten takes tensors, got {type(tensor).__name__} {tensor!r}")
        if id(tensor) in seen or id(tensor) in sparse or tensor.is_sparse:
            continue
        if not tensor.requires_grad or not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        seen.add(id(tensor))
        groups.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    for members in groups.values():
        for tensor in members:
            old = getattr(tensor, FLAT_ATTRIBUTE, None)
            if old is not None:
                old.replaced = True
    _generation += 1
    return [FlatBuffer(members) for members in groups.values()]
