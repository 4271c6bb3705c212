"""The reliability tracker: eta, one reliability per annotator, and everything that updates it.

It owns eta ((K,) float64 on the CPU), the (K,) prior log-odds table ``logit(eta_k)`` the E-step
indexes on the device (rebuilt only when eta is assigned), and eq. 7's statistics of the current
optimizer step: per annotator the sum of ``w`` and the count, kept as Python floats because on a small
model a dozen (K,)-sized tensor ops would cost more than the E-step itself. Pure torch: the trainer
feeds it the ``(w, annotator)`` rows of each micro-batch and calls :meth:`step` at the optimizer step's
end (Algorithm 1) or :meth:`full_update` with a whole E-step (eq. 6).

Two per-step rules (``update``): ``"ema"``, eq. 7; ``"count"``, the count-aware running Beta-posterior
mean of :func:`rpo.core.em.count_step` (``prior_strength`` pseudo-labels at eta0; the tracker keeps each
annotator's number of labels seen, ``seen``, and carries it in its state so a resume is bit-exact).
"""

from __future__ import annotations

import torch

from rpo.core.checks import check_alpha
from rpo.core.em import count_prior_strength, count_step, ema_step, full_update, init_eta, prior_log_odds

UPDATES = ("ema", "count")


class ReliabilityTracker:
    def __init__(
        self,
        names: list[str],
        eta0: float,
        alpha: float,
        device=None,
        *,
        update: str = "ema",
        prior_strength: float | None = None,
    ):
        check_alpha(alpha)
        if update not in UPDATES:
            raise ValueError(f"ReliabilityTracker update must be one of {UPDATES}, got {update!r}")
        self.names = list(names)
        self.alpha = alpha
        self.update = update
        self.prior_strength = count_prior_strength(alpha) if prior_strength is None else float(prior_strength)
        # only the count rule reads n0; at alpha = 1 its default is 0, which eq. 7 (update="ema") never uses
        if update == "count" and not self.prior_strength > 0:  # also refuses NaN
            raise ValueError(
                f"prior_strength must be > 0 for the count update, got {self.prior_strength} "
                f"(alpha={alpha}, prior_strength={prior_strength})"
            )
        self.device = device if device is not None else torch.device("cpu")
        self.eta = init_eta(len(self.names), eta0)
        self.seen = [0] * len(self.names)  # labels seen so far per annotator (the count rule's N_k)
        self.reset_step()

    # ---- eta and its prior table
    @property
    def eta(self) -> torch.Tensor:
        """(K,) float64 on the CPU. Assigning it also refreshes the prior table (an in-place edit would not)."""
        return self._eta

    @eta.setter
    def eta(self, value) -> None:
        values = value.detach().to("cpu", torch.float64).tolist() if torch.is_tensor(value) else list(value)
        if len(values) != len(self.names):
            raise ValueError(f"eta has {len(values)} values for {len(self.names)} annotators {self.names[:5]}")
        self._eta = torch.tensor(values, dtype=torch.float64)
        self._prior = torch.tensor([prior_log_odds(v) for v in values], dtype=torch.float32, device=self.device)

    @property
    def num_annotators(self) -> int:
        return len(self.names)

    def prior(self, ids: torch.Tensor) -> torch.Tensor:
        """``logit(eta_k)`` of each row's annotator, float32 on the device; with K = 1 a (1,) tensor that
        broadcasts (no indexing)."""
        return self._prior if self._prior.numel() == 1 else self._prior[ids]

    def eta_of(self, ids: torch.Tensor) -> torch.Tensor:
        """eta_k of each row's annotator, float64 on ``ids``' device."""
        return self._eta.to(ids.device)[ids]

    # ---- eq. 7, once per optimizer step
    def reset_step(self) -> None:
        self.step_sums = [0.0] * len(self.names)
        self.step_counts = [0] * len(self.names)

    def add(self, w: list[float], ids: list[float]) -> None:
        """Add one micro-batch's rows (every process's, in order) to the current step's statistics."""
        for w_i, k in zip(w, ids):
            self.step_sums[int(k)] += w_i
            self.step_counts[int(k)] += 1

    def step(self) -> None:
        """Eq. 7 (or the count rule) for every annotator from the step's statistics, then start a new step.
        Annotators with no label in the step keep their value (Algorithm 1, line 8)."""
        old, sums, counts = self._eta.tolist(), self.step_sums, self.step_counts
        if self.update == "count":
            n0 = self.prior_strength
            self.eta = [count_step(e, n, s, c, n0) for e, n, s, c in zip(old, self.seen, sums, counts)]
        else:
            self.eta = [ema_step(e, s, c, self.alpha) for e, s, c in zip(old, sums, counts)]
        self.seen = [n + c for n, c in zip(self.seen, counts)]
        self.reset_step()

    # ---- eq. 6, from a whole E-step
    def full_update(self, w: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Eq. 6: each eta_k the mean w over its labels (annotators without labels keep their value)."""
        self.eta = full_update(w, ids, len(self.names), self.eta)
        return self.eta

    # ---- state
    def state_dict(self) -> dict:
        return {"names": list(self.names), "eta": self._eta.tolist(), "update": self.update, "seen": list(self.seen)}

    def load_state_dict(self, state: dict, *, source: str = "state") -> None:
        if list(state["names"]) != self.names:
            raise ValueError(f"{source}: annotators {state['names']} differ from this run's {self.names}")
        if "seen" not in state and self.update == "count":  # a state written before the count rule existed
            raise ValueError(f"{source} has no label counts ('seen'): the count update cannot resume from it")
        seen = [int(n) for n in state.get("seen", [0] * len(self.names))]
        if len(seen) != len(self.names):
            raise ValueError(f"{source}: 'seen' has {len(seen)} counts for {len(self.names)} annotators")
        self.eta = torch.tensor(state["eta"], dtype=torch.float64)
        self.seen = seen
