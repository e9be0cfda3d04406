"""Shared by the exact-resume tests of the video heads: train a run whole, and the same run stopped after a step
and resumed, so each test states only its config and what must match."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch


class Stop(Exception):
    """Raised by a training hook to cut a run short, as a kill would."""


def whole_and_resumed(config: Callable[..., Any], samples: list, root: Path, stop_at: int = 3
                      ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int]:
    """(the whole run's head, the stopped-and-resumed run's head, the stopped run's last checkpoint step);
    ``config(out, **more)`` gives the TrainConfig of a run in ``out``."""
    import clipdense.models as cdm
    from clipdense.data.streams import InMemorySamples
    from clipdense.train.checkpoint import latest_checkpoint
    from clipdense.train.run import run_training

    def stop(step: int, trainer: Any) -> None:
        if step == stop_at:
            raise Stop

    run_training(config(root / "full"), source=InMemorySamples(samples, seed=3))
    try:
        run_training(config(root / "cut"), source=InMemorySamples(samples, seed=3), hooks=[stop])
    except Stop:
        pass
    else:
        raise AssertionError(f"the run was not stopped at step {stop_at}")
    checkpoint = latest_checkpoint(root / "cut")[0]
    run_training(config(root / "cut", resume=str(root / "cut")), source=InMemorySamples(samples, seed=3))
    full, cut = (cdm.read_state_dict(latest_checkpoint(root / r)[1] / "head.safetensors") for r in ("full", "cut"))
    return full, cut, checkpoint
