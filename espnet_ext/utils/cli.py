"""What the ``python -m espnet_ext.bin.*`` entry points share."""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence, Tuple, Union

__all__ = ["LOG_FORMAT", "setup_logging", "task_entry_points"]

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


def setup_logging(level: Union[int, str] = logging.INFO, fmt: str = LOG_FORMAT) -> None:
    """Configure the root logger as the recipe's stages do (ESPnet's log line format)."""
    logging.basicConfig(level=level, format=fmt)


def task_entry_points(task_cls) -> Tuple[Callable, Callable]:
    """``(get_parser, main)`` of an entry point that runs an ESPnet task class.

    The entry point takes exactly the task's options; ``main(cmd)`` parses ``cmd``
    (default: ``sys.argv[1:]``) and runs the task.
    """

    def get_parser():
        return task_cls.get_parser()

    def main(cmd: Optional[Sequence[str]] = None) -> None:
        task_cls.main(cmd=cmd)

    get_parser.__doc__ = f"The argument parser of {task_cls.__name__}."
    main.__doc__ = f"Run {task_cls.__name__} with the options in ``cmd``."
    return get_parser, main
