"""``paczero bench``: what a step costs against two bare forward passes, and against the reference protocol.

Everything is measured in one process and one run and reported as ratios, because shared machines are noisy:

- bare forward time over the step's batch, and each mechanism's full ``Trainer.step`` time (:mod:`.step`);
- the *reference protocol* of the published code, re-implemented on our parts for comparison only: three
  forward sweeps per step (the third only logs the loss), each one call of N sequences per label word padded
  to the call's longest rounded up to 8, a full-vocabulary log-softmax at every position, and four
  regenerations of z (+ε, −2ε, +ε restore, −η·b update) (:mod:`.reference`);
- peak memory of inference alone and of a training step, each in a fresh subprocess (CPU: the resident-set
  high-water mark, reset after loading; CUDA: ``torch.cuda.max_memory_allocated``) (:mod:`.memory`);
- the privacy bookkeeping (subset aggregation, posterior update, MI calibration) at M = 128, N = 1000
  (:mod:`.bookkeeping`);
- optional sweeps of the step time over the pool size N (linear fit) and the number of subsets M
  (:mod:`.sweeps`); on a cached-trunk config, the step with and without the cache (:mod:`.trunk`).
"""
