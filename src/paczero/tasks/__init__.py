"""Tasks: where examples come from, how they are prompted, and the per-example objective.

Import the module you need (``config`` and ``data``/``custom`` load no torch):

- ``config``: :class:`TaskConfig`, the built-in tasks' defaults (``TASKS``) and ``OBJECTIVES``.
- ``registry``: :func:`load_splits`, :func:`build_objective` and the ``Objective`` protocol.
- ``data``: ``Example``, ``Splits``, the MeZO split and the SST-2 / synthetic readers.
- ``custom``: tasks read from the user's files or a hub data set.
- ``classification``, ``squad``, ``generation``, ``padding``: the objectives and their batching.
"""
