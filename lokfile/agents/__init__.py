"""The multi-LLM modes (debate, spawn, conduct) and backend routing (suggest).

Each mode builds `lokfile.model.Workflow` objects in code and runs them with
`lokfile.api.run`, so every backend call is keyed, cached, recorded and
listed by `lok runs` like any workflow step. `common` holds what they share.
"""
