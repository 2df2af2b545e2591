"""The threaded runtime: workers, hand-offs, the pipeline, its sinks and the session that runs it.

* :mod:`tracker.pipeline.pipeline` -- :class:`Pipeline`, the capture -> track -> sinks threads.
* :mod:`tracker.pipeline.handoff` -- the queues between threads.
* :mod:`tracker.pipeline.runtime` -- ``create_tracker`` from command-line options.
* :mod:`tracker.pipeline.session` -- one run of a source through the pipeline, with its report.
* :mod:`tracker.pipeline.preview` -- the rendered preview sink.
"""

from tracker.pipeline.pipeline import Pipeline, PipelineStats, Timings

__all__ = ["Pipeline", "PipelineStats", "Timings"]
