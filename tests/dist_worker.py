"""torchrun entry point for the distributed tests: `paczero` itself, except that the rank named by
PACZERO_TEST_KILL_RANK SIGKILLs itself when it reaches step PACZERO_TEST_KILL_STEP (a crashed rank), and
that with PACZERO_TEST_DUMP=DIR every rank writes what it released and a digest of its weights there."""

import hashlib
import json
import os
import signal
import sys
from pathlib import Path

from paczero.cli import main
from paczero.trainer import Trainer

kill_rank = int(os.environ.get("PACZERO_TEST_KILL_RANK", "-1"))
kill_step = int(os.environ.get("PACZERO_TEST_KILL_STEP", "-1"))
original_step = Trainer.step


def step(self, t):
    if self.dist.rank == kill_rank and t == kill_step:
        os.kill(os.getpid(), signal.SIGKILL)
    return original_step(self, t)


dump = os.environ.get("PACZERO_TEST_DUMP")
original_run = Trainer.run


def run(self):
    summary = original_run(self)
    if dump:
        digest = hashlib.sha256()
        for _, p in self.loaded.trainable:
            digest.update(p.detach().cpu().numpy().tobytes())
        state = {"released": [r.released for r in self.records], "weights": digest.hexdigest()}
        (Path(dump) / f"rank{self.dist.rank}.json").write_text(json.dumps(state))
    return summary


Trainer.step = step
Trainer.run = run
sys.exit(main(sys.argv[1:]))
