"""torchrun entry point for the distributed tests: `paczero` itself, except that the rank named by
PACZERO_TEST_KILL_RANK SIGKILLs itself when it reaches step PACZERO_TEST_KILL_STEP (a crashed rank)."""

import os
import signal
import sys

from paczero.cli import main
from paczero.trainer import Trainer

kill_rank = int(os.environ.get("PACZERO_TEST_KILL_RANK", "-1"))
kill_step = int(os.environ.get("PACZERO_TEST_KILL_STEP", "-1"))
original_step = Trainer.step


def step(self, t):
    if self.dist.rank == kill_rank and t == kill_step:
        os.kill(os.getpid(), signal.SIGKILL)
    return original_step(self, t)


Trainer.step = step
sys.exit(main(sys.argv[1:]))
