"""agents: the multi-LLM modes and the built-in commands, over `lokfile.api`.

    ask      `lok ask`: one prompt to several backends, answers cached by content
    doctor   `lok doctor`: which backends can answer now, and the document it reports
    builtin  the built-in workflows as hunt, audit, explain, diff, ci and fix run them
    gh       `lok hunt --issues`: findings filed as GitHub issues
    debate   backends argue in rounds, then a judge gives a verdict
    spawn    a task planned into subtasks, run in parallel, summarised
    conduct  a conductor backend delegates, turn by turn
    suggest  routing a task to backends by keyword categories (no I/O)
    common   what the modes share: choosing backends, building steps, running them

Each mode builds `model.Workflow` objects in code and runs them with
`api.run`, so every backend call is keyed, cached, recorded and listed by
`lok runs` like any workflow step. This face imports nothing:
`from lokfile.agents import debate`.
"""

__all__ = ["ask", "builtin", "common", "conduct", "debate", "doctor", "gh", "spawn", "suggest"]
