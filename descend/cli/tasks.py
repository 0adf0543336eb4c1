"""The training tasks of the ``descend`` command line: what ``descend compare`` and
``descend lr-find`` train.

A :class:`Task` bundles a model, an infinite stream of training batches, a training loss
and held-out metrics, all deterministic from a seed and small enough for a CPU:

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (no download), a small CNN,
  cross-entropy on mini-batches of 64;
- ``rosenbrock``: the two-dimensional Rosenbrock function from (-1.5, 2);
- ``quadratic``: an ill-conditioned quadratic in 20 dimensions (condition number 100),
  full and exact gradients;
- ``charlm``: a character-level MLP language model on a short essay shipped with descend
  (``descend/cli/data/gradient_descent.txt``), mini-batches of 64 windows.

How a trainer uses one::

    task = get_task("digits")
    model = task.model(seed).to(device)
    optimizer = descend.Adam(model.parameters(), lr=1e-3)
    for step, batch in zip(range(task.default_steps), task.batches(seed, device)):
        optimizer.zero_grad()
        task.loss(model, batch).backward()
        optimizer.step()
    print(task.evaluate(model, device))  # {"loss": ..., "accuracy": ...}

Tasks hold no training state: the same instance serves any number of runs, one after
another or side by side. Their data are loaded on first use and cached, once per device.
Nothing here touches torch's global random state: models are drawn inside
:func:`torch.random.fork_rng`, batches from private :class:`torch.Generator`\\ s.
"""

from __future__ import annotations

import abc
import functools
import importlib.resources
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

TEXT_FILE = "gradient_descent.txt"
"""The ``charlm`` task's text, in ``descend/cli/data/``."""


class Task(abc.ABC):
    """A training problem: a model, its training batches and loss, and held-out metrics.

    Subclasses set the class attributes and implement the four methods. Every method is
    deterministic given its arguments and leaves torch's global random state alone.
    """

    name: str
    """The task's name on the command line."""
    description: str
    """One line for reports: the data, the model, the loss and the batch size."""
    metrics: tuple[str, ...]
    """The keys of :meth:`evaluate`'s result, ``"loss"`` first."""
    log_loss: bool
    """Whether plots should show the loss on a log axis."""
    default_steps: int
    """A good number of training steps for ``descend compare`` on this task."""

    @abc.abstractmethod
    def model(self, seed: int) -> nn.Module:
        """A new float32 model on the CPU (move it with ``.to(device)``), its initial
        parameters drawn from ``seed`` only; torch's global random state is unchanged."""

    @abc.abstractmethod
    def batches(self, seed: int, device: torch.device) -> Iterator[Any]:
        """An infinite iterator of training batches on ``device``, determined by ``seed``."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The scalar training loss of ``model`` on one ``batch`` (with its graph)."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """The held-out metrics of ``model`` (on ``device``), keys :attr:`metrics`.

        Runs in eval mode without gradients and puts the model back in the mode it had.
        """

    def __repr__(self) -> str:
        return f"<task {self.name}: {self.description}>"


def _seeded_model(seed: int, build: Any) -> nn.Module:
    """``build()`` with torch's CPU random state seeded by ``seed``, the global state kept;
    the result is converted to float32 whatever torch's default dtype."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().to(torch.float32)


class _Evaluating:
    """Context manager: ``model`` in eval mode under ``torch.no_grad()``, then its mode back."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.training = model.training
        self.no_grad = torch.no_grad()

    def __enter__(self) -> nn.Module:
        self.model.eval()
        self.no_grad.__enter__()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.no_grad.__exit__(*exc)
        self.model.train(self.training)


# ---------------------------------------------------------------------------------------
# digits


DIGITS_TRAIN = 1500
"""Training images of the ``digits`` task; the other 297 of the 1797 are its test set."""
DIGITS_BATCH = 64
DIGITS_IMAGES = 1797


def digits_split() -> tuple[torch.Tensor, torch.Tensor]:
    """The indices into ``load_digits()`` of the ``digits`` task's 1500 training images and
    297 test images: a permutation from a generator of its own seeded 0, the same split
    for every seed."""
    order = torch.randperm(DIGITS_IMAGES, generator=torch.Generator().manual_seed(0))
    return order[:DIGITS_TRAIN], order[DIGITS_TRAIN:]


@functools.lru_cache(maxsize=1)
def _digits_cpu() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The digits split: train images, train labels, test images, test labels (CPU)."""
    from sklearn.datasets import load_digits  # slow to import: only when needed

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).div_(16).unsqueeze(1)
    labels = torch.tensor(data.target, dtype=torch.int64)
    train, test = digits_split()
    return images[train], labels[train], images[test], labels[test]


class Digits(Task):
    """Handwritten digits: scikit-learn's ``load_digits`` (1797 images of 8x8 pixels in
    16 grey levels, 10 classes; bundled with scikit-learn, no download).

    Pixels are scaled to [0, 1]. A fixed split (the same for every seed) keeps 1500 images
    for training and 297 for the test metrics. The model is a small CNN of 6,090
    parameters: conv 3x3 to 16 channels, ReLU, 2x2 max-pool, conv 3x3 to 32 channels,
    ReLU, 2x2 max-pool, linear 128 -> 10. Training batches are 64 images drawn without
    replacement: each epoch reshuffles the 1500 with a generator seeded by ``seed`` and
    yields its 23 full batches (the 28 left over wait for a later epoch's shuffle).
    """

    name = "digits"
    description = (
        "sklearn digits 8x8 (1500 train / 297 test), CNN conv16-conv32-linear "
        "(6,090 params), cross-entropy, batch 64"
    )
    metrics = ("loss", "accuracy")
    log_loss = False
    default_steps = 300

    def __init__(self) -> None:
        self._data: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def data(
        self, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Train images (1500, 1, 8, 8), train labels (1500,), test images (297, 1, 8, 8)
        and test labels (297,) on ``device``: float32 pixels in [0, 1], int64 labels 0-9."""
        device = torch.device(device)
        if device not in self._data:
            self._data[device] = tuple(t.to(device) for t in _digits_cpu())
        return self._data[device]  # type: ignore[return-value]

    def model(self, seed: int) -> nn.Module:
        return _seeded_model(
            seed,
            lambda: nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Flatten(),
                nn.Linear(32 * 2 * 2, 10),
            ),
        )

    def batches(
        self, seed: int, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels, _, _ = self.data(device)
        generator = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(DIGITS_TRAIN, generator=generator).to(images.device)
            for start in range(0, DIGITS_TRAIN - DIGITS_BATCH + 1, DIGITS_BATCH):
                chosen = order[start : start + DIGITS_BATCH]
                yield images[chosen], labels[chosen]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(model(images), labels)

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        _, _, images, labels = self.data(device)
        with _Evaluating(model):
            logits = model(images)
            return {
                "loss": F.cross_entropy(logits, labels).item(),
                "accuracy": (logits.argmax(dim=1) == labels).float().mean().item(),
            }


# ---------------------------------------------------------------------------------------
# rosenbrock

ROSENBROCK_START = (-1.5, 2.0)
ROSENBROCK_MINIMUM = (1.0, 1.0)


class _ExactGradient(Task):
    """A task whose model computes its own loss: no data, the batches are ``None``."""

    def batches(self, seed: int, device: torch.device) -> Iterator[None]:
        while True:
            yield None

    def loss(self, model: nn.Module, batch: None) -> torch.Tensor:
        return model()


class RosenbrockModel(nn.Module):
    """One parameter ``xy`` of shape (2,); calling the module gives the Rosenbrock value
    (1 - x)² + 100 (y - x²)², whose minimum is 0 at (1, 1)."""

    def __init__(self, start: tuple[float, float] = ROSENBROCK_START) -> None:
        super().__init__()
        self.xy = nn.Parameter(torch.tensor(start, dtype=torch.float32))

    def forward(self) -> torch.Tensor:
        x, y = self.xy[0], self.xy[1]
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2


class Rosenbrock(_ExactGradient):
    """The Rosenbrock function (1 - x)² + 100 (y - x²)², from (-1.5, 2.0) (loss 12.5).

    Its minimum, 0 at (1, 1), lies at the end of a long curved valley. The start is the
    same for every seed, so every seed gives the same run; the batches are ``None``
    forever (the gradient is exact). ``distance`` is the euclidean distance from ``xy``
    to (1, 1).
    """

    name = "rosenbrock"
    description = "Rosenbrock function (1-x)^2 + 100(y-x^2)^2 from (-1.5, 2), exact gradient"
    metrics = ("loss", "distance")
    log_loss = True
    default_steps = 1000

    def model(self, seed: int) -> nn.Module:
        return _seeded_model(seed, RosenbrockModel)

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        with _Evaluating(model):
            minimum = torch.tensor(ROSENBROCK_MINIMUM, device=model.xy.device)
            return {
                "loss": model().item(),
                "distance": torch.linalg.vector_norm(model.xy - minimum).item(),
            }


# ---------------------------------------------------------------------------------------
# quadratic

QUADRATIC_DIM = 20
QUADRATIC_EIGENVALUES = (1.0, 100.0)
"""The smallest and largest eigenvalue of the quadratic's A; the others are log-spaced."""
QUADRATIC_START_SCALE = 0.5
"""The start is x* plus this times a standard normal vector drawn from the seed."""


@functools.lru_cache(maxsize=1)
def _quadratic_problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The eigenvalues, A and x* of the quadratic task, float64 on the CPU, from a
    generator of its own seeded 0: the same problem for every seed."""
    generator = torch.Generator().manual_seed(0)
    low, high = QUADRATIC_EIGENVALUES
    eigenvalues = torch.logspace(
        math.log10(low), math.log10(high), QUADRATIC_DIM, dtype=torch.float64
    )
    gaussian = torch.randn(QUADRATIC_DIM, QUADRATIC_DIM, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r))  # a uniformly random rotation (Haar)
    a = (q * eigenvalues) @ q.T
    a = (a + a.T) / 2
    x_star = torch.randn(QUADRATIC_DIM, generator=generator, dtype=torch.float64)
    return eigenvalues, a, x_star


class QuadraticModel(nn.Module):
    """A parameter ``x`` and the quadratic 0.5 (x - x*)ᵀ A (x - x*); A and x* are
    non-persistent buffers (they follow ``.to(device)`` but stay out of the state_dict)."""

    def __init__(self, a: torch.Tensor, x_star: torch.Tensor, start: torch.Tensor) -> None:
        super().__init__()
        self.x = nn.Parameter(start.clone())
        self.register_buffer("a", a.clone(), persistent=False)
        self.register_buffer("x_star", x_star.clone(), persistent=False)

    def forward(self) -> torch.Tensor:
        d = self.x - self.x_star
        return 0.5 * d @ (self.a @ d)


class Quadratic(_ExactGradient):
    """An ill-conditioned quadratic 0.5 (x - x*)ᵀ A (x - x*) in 20 dimensions.

    A = Q diag(λ) Qᵀ with the eigenvalues λ log-spaced from 1 to 100 (condition number
    100) and Q a random rotation; Q and x* come from a fixed generator (seed 0), so the
    problem is the same for every seed. The parameter ``x`` starts at x* + 0.5 z with z a
    standard normal vector drawn from ``seed``: an initial loss of 0.125 Σλ ≈ 58 on
    average (seed 0: 20.5; seeds 0-199: from 8 to 139). The batches are ``None`` forever:
    the gradient A (x - x*) is exact. ``distance`` is ‖x - x*‖.
    """

    name = "quadratic"
    description = (
        "quadratic 0.5 (x-x*)^T A (x-x*) in 20 dimensions, eigenvalues of A log-spaced "
        "1 to 100, exact gradient"
    )
    metrics = ("loss", "distance")
    log_loss = True
    default_steps = 500

    @property
    def eigenvalues(self) -> torch.Tensor:
        """The eigenvalues of A, ascending (float64)."""
        return _quadratic_problem()[0].clone()

    @property
    def a(self) -> torch.Tensor:
        """The matrix A (float64; the model holds it in float32)."""
        return _quadratic_problem()[1].clone()

    @property
    def x_star(self) -> torch.Tensor:
        """The minimum x* (float64; the model holds it in float32)."""
        return _quadratic_problem()[2].clone()

    def model(self, seed: int) -> nn.Module:
        _, a, x_star = _quadratic_problem()
        generator = torch.Generator().manual_seed(seed)
        offset = torch.randn(QUADRATIC_DIM, generator=generator, dtype=torch.float64)
        start = x_star + QUADRATIC_START_SCALE * offset
        return QuadraticModel(a, x_star, start).to(torch.float32)

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        with _Evaluating(model):
            return {
                "loss": model().item(),
                "distance": torch.linalg.vector_norm(model.x - model.x_star).item(),
            }


# ---------------------------------------------------------------------------------------
# charlm

CHARLM_CONTEXT = 16
CHARLM_EMBEDDING = 16
CHARLM_HIDDEN = 128
CHARLM_BATCH = 64
CHARLM_HELD_OUT = 0.1
"""The fraction of the text, at its end, kept for the held-out metrics."""


@functools.lru_cache(maxsize=1)
def read_text() -> str:
    """The ``charlm`` task's text: a short essay on gradient descent, plain ASCII."""
    resource = importlib.resources.files("descend.cli") / "data" / TEXT_FILE
    return resource.read_text(encoding="ascii")


class CharMLP(nn.Module):
    """A Bengio-style MLP language model: the embeddings of the previous ``context``
    characters, concatenated, then a tanh hidden layer, then logits over the vocabulary."""

    def __init__(
        self,
        vocab: int,
        context: int = CHARLM_CONTEXT,
        embedding: int = CHARLM_EMBEDDING,
        hidden: int = CHARLM_HIDDEN,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.hidden = nn.Linear(context * embedding, hidden)
        self.output = nn.Linear(hidden, vocab)

    def forward(self, contexts: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, vocab) for ``contexts`` of shape (batch, context)."""
        features = self.embedding(contexts).flatten(start_dim=1)
        return self.output(torch.tanh(self.hidden(features)))


class CharLM(Task):
    """Next-character prediction on the essay in ``descend/cli/data/gradient_descent.txt``.

    The vocabulary is the sorted set of the text's characters. The last 10% of the text
    is held out; the metrics are the cross-entropy in nats per character and the accuracy
    of the most likely next character over every window of the held-out part (each
    16-character context inside it and the character that follows). Training batches are
    64 windows at uniformly random positions of the first 90%, drawn by a generator
    seeded by ``seed``. The model is :class:`CharMLP`: embeddings of 16 dimensions for
    16 characters of context, a tanh layer of 128, logits over the vocabulary.
    """

    name = "charlm"
    description = (
        "character LM on a 10 KB essay (last 10% held out), MLP of 16 chars x 16-dim "
        "embeddings -> 128 tanh -> vocab, cross-entropy, batch 64"
    )
    metrics = ("loss", "accuracy")
    log_loss = False
    default_steps = 500

    def __init__(self) -> None:
        self._data: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def vocabulary(self) -> str:
        """The characters of the text, sorted: character ``vocabulary[i]`` has index i."""
        return "".join(sorted(set(read_text())))

    def data(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The encoded text (int64 indices into :attr:`vocabulary`) on ``device``, split
        into its training part (the first 90%) and its held-out part (the rest)."""
        device = torch.device(device)
        if device not in self._data:
            text = read_text()
            index = {c: i for i, c in enumerate(self.vocabulary)}
            encoded = torch.tensor([index[c] for c in text], dtype=torch.int64)
            split = len(text) - round(CHARLM_HELD_OUT * len(text))
            self._data[device] = (encoded[:split].to(device), encoded[split:].to(device))
        return self._data[device]

    def model(self, seed: int) -> nn.Module:
        vocab = len(self.vocabulary)
        return _seeded_model(seed, lambda: CharMLP(vocab))

    def batches(
        self, seed: int, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        train, _ = self.data(device)
        generator = torch.Generator().manual_seed(seed)
        offsets = torch.arange(CHARLM_CONTEXT + 1, device=train.device)
        while True:
            starts = torch.randint(
                len(train) - CHARLM_CONTEXT, (CHARLM_BATCH,), generator=generator
            ).to(train.device)
            windows = train[starts[:, None] + offsets]
            yield windows[:, :-1], windows[:, -1]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        contexts, targets = batch
        return F.cross_entropy(model(contexts), targets)

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        _, held_out = self.data(device)
        windows = held_out.unfold(0, CHARLM_CONTEXT + 1, 1)
        with _Evaluating(model):
            logits = model(windows[:, :-1])
            targets = windows[:, -1]
            return {
                "loss": F.cross_entropy(logits, targets).item(),
                "accuracy": (logits.argmax(dim=1) == targets).float().mean().item(),
            }


# ---------------------------------------------------------------------------------------

TASKS: dict[str, Task] = {
    task.name: task for task in (Digits(), Rosenbrock(), Quadratic(), CharLM())
}
"""The tasks by name, in the order the command line lists them."""


def get_task(name: str) -> Task:
    """The task called ``name``; a ``ValueError`` listing the tasks if there is none."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; the tasks are {', '.join(TASKS)}") from None
