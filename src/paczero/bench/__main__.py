"""``python -m paczero.bench PHASE '[config, overrides, threads]'``: one memory phase in a fresh process."""

import json
import sys

import torch

from paczero.bench.memory import memory_phase

if __name__ == "__main__":
    config_file, config_overrides, n_threads = json.loads(sys.argv[2])
    torch.set_num_threads(n_threads)
    print(json.dumps(memory_phase(config_file, config_overrides, sys.argv[1])))
