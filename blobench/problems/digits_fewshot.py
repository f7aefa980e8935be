"""N-way K-shot classification on scikit-learn's 8x8 digits: our stand-in for UFO-BLO's Omniglot experiment.

Likhosherstov et al., "Debiasing a First-order Heuristic for Approximate Bi-level Optimization" (ICML 2021),
Sec. 5 (few-shot Omniglot, Table 1) uses the algorithm-based objective M^(r) (eq. (2)) with a classifier
adapted by r SGD steps on a task's support set and scored on its query set. Omniglot cannot be downloaded
here, so we use ``sklearn.datasets.load_digits`` (1797 images, 10 classes, shipped inside scikit-learn).

A task: N classes drawn at random and relabelled 0..N-1 in random order, K support and Q query images per
class. Images with even index form the meta-train split, odd index the meta-test split (so test tasks use
unseen images; with only 10 classes a class split would leave too few N-way combinations). The model is a
softmax classifier (``hidden = 0``) or a one-hidden-layer tanh MLP on the 64 pixels (scaled to [0, 1]);
theta = phi_0 are its flattened parameters; inner and outer losses are cross-entropy on support / query.

Ground truth: the task distribution *is* the uniform law on a fixed pool of ``tasks`` meta-train tasks
drawn once (seeded, float64); ``hypergradient`` averages the exact unrolled gradient over that pool.
"""
from __future__ import annotations

import torch

from blobench import harness
from blobench.core.errors import ParameterError
from blobench.core.params import Param
from blobench.problems.sinusoid import TaskPoolProblem, mlp_forward, mlp_init


def _load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ParameterError("problem 'digits-fewshot' needs scikit-learn (pip install scikit-learn)") from e
    d = load_digits()
    return torch.tensor(d.data / 16.0, dtype=torch.float64), torch.tensor(d.target, dtype=torch.long)


@harness.register_problem("digits-fewshot")
class DigitsFewShot(TaskPoolProblem):
    """N-way K-shot classification on sklearn's 8x8 digits (stand-in for UFO-BLO's Omniglot); truth over a fixed task pool."""

    params = {
        "ways": Param("int", default=5, low=2, high=10, doc="N: classes per task"),
        "shots": Param("int", default=1, low=1, doc="K: support images per class"),
        "query": Param("int", default=5, low=1, doc="Q: query images per class"),
        "hidden": Param("int", default=0, low=0, doc="hidden width (0: softmax classifier)"),
        "unroll_steps": Param("int", default=5, low=0, doc="r: inner SGD steps on the support set"),
        "unroll_lr": Param("float", default=0.5, low=0, low_open=True, doc="alpha: inner step size"),
        "tasks": Param("int", default=256, low=1, doc="size of the fixed meta-train task pool"),
        "seed": Param("int", default=0, low=0, doc="seed of the task pools and of x0"),
    }

    def setup(self) -> None:
        p = self.p
        X, y = _load_digits()
        self.split = {"train": (X[0::2], y[0::2]), "test": (X[1::2], y[1::2])}
        self.sizes = [64, p["hidden"], p["ways"]] if p["hidden"] else [64, p["ways"]]
        gen = torch.Generator().manual_seed(p["seed"])
        self.pool = self.make_tasks("train", p["tasks"], gen)
        self._x0 = mlp_init(self.sizes, gen) * 0.1
        self.dim_x = self.dim_y = self._x0.numel()

    def make_tasks(self, split: str, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """n tasks from a split: xs [n, N*K, 64], ys one-hot [n, N*K, N], xq [n, N*Q, 64], yq [n, N*Q, N]."""
        N, K, Q = self.p["ways"], self.p["shots"], self.p["query"]
        X, y = self.split[split]
        by_class = [torch.nonzero(y == c).squeeze(1) for c in range(10)]
        eye = torch.eye(N, dtype=torch.float64)
        out = {"xs": [], "ys": [], "xq": [], "yq": []}
        for _ in range(n):
            classes = torch.randperm(10, generator=gen)[:N]
            xs, ys, xq, yq = [], [], [], []
            for lab, c in enumerate(classes.tolist()):
                idx = by_class[c][torch.randperm(by_class[c].numel(), generator=gen)[:K + Q]]
                xs.append(X[idx[:K]])
                xq.append(X[idx[K:]])
                ys.append(eye[lab].expand(K, N))
                yq.append(eye[lab].expand(Q, N))
            for k, v in (("xs", xs), ("ys", ys), ("xq", xq), ("yq", yq)):
                out[k].append(torch.cat(v))
        return {k: torch.stack(v) for k, v in out.items()}

    def _ce(self, y, inp, onehot):
        logits = mlp_forward(y, inp, self.sizes)
        return -torch.mean(torch.sum(onehot * torch.log_softmax(logits, -1), -1))

    def inner(self, x, y, batch=None):
        return self._ce(y, batch["xs"], batch["ys"])

    def outer(self, x, y, batch=None):
        return self._ce(y, batch["xq"], batch["yq"])

    def accuracy(self, theta: torch.Tensor, tasks: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-task query accuracy after r inner steps from theta (the few-shot test metric)."""
        r, lr = self.p["unroll_steps"], self.p["unroll_lr"]

        def one(task):
            phi = theta
            for _ in range(r):
                phi = phi - lr * torch.func.grad(self.inner, argnums=1)(theta, phi, task)
            logits = mlp_forward(phi, task["xq"], self.sizes)
            return (logits.argmax(-1) == task["yq"].argmax(-1)).double().mean()

        return torch.func.vmap(one)(tasks)
