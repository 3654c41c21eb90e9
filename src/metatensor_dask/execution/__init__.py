"""The execution side: clusters, progress, pipelines, batch jobs, the demo and the CLI.

It sits on top of the model (``labels``, ``block``, ``tensor``), ``io`` and
``operations``, and nothing below imports it.
"""
