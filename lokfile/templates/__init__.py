"""templates: prompts, shell commands, conditions and loop sources, filled in.

    render       the entry points: render_prompt, render_shell, eval_condition, …
    scope        the names a template sees and how their values read as text
    source       template text before Jinja: markers, the original's forms
    conditions   the original's condition language and loop sources, without Jinja
    jinja        lok's Jinja environment (the only jinja2 user, loaded on first need)
    shellquote   where a value lands in a shell command, and quoting it there
    shellplace   the quoting contexts, as values
    shell_lexer  the POSIX-shell state machine behind shellquote.places
    shell_words  the words bash evaluates as arithmetic or names

The seam is `render` (a `Context` in, text out, TemplateError for what cannot
render) and `shellquote` (quote, wrap_command). This face imports nothing, so
a plain template costs no jinja2: `from lokfile.templates.render import …`.
"""

__all__ = ["render", "shellquote"]
