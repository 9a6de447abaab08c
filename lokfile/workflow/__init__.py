"""workflow: workflow files in, a checked `model.Workflow` out.

    loader    where NAME resolves to, reading, `extends`, listing
    draft     a file's text and tables before checking, and the keys it may hold
    build     the merged draft checked and turned into model values, every problem at once
    graph     the step graph: names, dependencies, cycles, what templates read
    cache     loaded workflows kept by file content, for big files

The seam is `loader.load_workflow(NAME, project, config)`: a `Workflow`, or a
WorkflowError listing every problem with file, line and hint. This face
imports nothing; import the module: `from lokfile.workflow.loader import …`.
"""

__all__ = ["loader"]
