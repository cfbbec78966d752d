"""Skipped (NaN/inf) optimizer updates: counted over a window of recent updates, and the
error that stops a run with too many (:class:`~espnet_ext.train.resume.RunContext`)."""

from collections import deque
from typing import Any, Deque, Dict, Optional


class NonFiniteLimitError(RuntimeError):
    """Too many optimizer updates were skipped for a NaN/inf loss or gradient."""


class NonFiniteWindow:
    """Skipped updates among the last ``window`` optimizer updates (None: the whole run).

    A lifetime count would stop a long run on a low, steady rate of skips (e.g. an fp16
    loss scaler's one in 2,000) however healthy it is; the window bounds the *rate*
    (default: more than 100 of the last 2,000 updates, 5%), while a divergence (every
    update skipped) still stops the run after ``limit + 1`` updates.

    State (:meth:`state`) is the update counter and the update numbers of the skips still
    in the window; :meth:`load` also takes an old checkpoint's lifetime count alone
    (``nonfinite_total``): those skips are taken as recent, so they age out after one
    window (the conservative reading).
    """

    def __init__(self, window: Optional[int]):
        self.window = window
        self.updates = 0
        self.total = 0
        self._skips: Deque[int] = deque()

    def add(self, skipped: bool) -> None:
        self.updates += 1
        if skipped:
            self.total += 1
            self._skips.append(self.updates)
        self._trim()

    @property
    def recent(self) -> int:
        return len(self._skips)

    def describe(self) -> str:
        return "in this run" if self.window is None else f"in the last {self.window} updates"

    def state(self) -> Dict[str, Any]:
        return {"updates": self.updates, "skips": list(self._skips), "window": self.window}

    def load(self, state: Optional[Dict[str, Any]], total: int) -> None:
        self.total = int(total)
        if state is None:  # a checkpoint from before the window: its lifetime count
            self.updates = 0
            self._skips = deque([0] * self.total)
            return
        self.updates = int(state["updates"])
        self._skips = deque(int(u) for u in state["skips"])
        self._trim()  # the window may have been shortened since

    def _trim(self) -> None:
        if self.window is not None:
            while self._skips and self._skips[0] <= self.updates - self.window:
                self._skips.popleft()
