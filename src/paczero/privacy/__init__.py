"""Privacy accounting: the ledger interface (``ledger``), MI accounting for PAC runs (``pac``) and the
(ε, δ) accountants of the DP baselines (``dp``). Nothing here reads the secret or touches tensors."""
