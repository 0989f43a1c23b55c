"""``insetgan app``: a local web page for the three jobs (compose, many bodies, fix a face).

:mod:`insetgan.app.runner` runs jobs in a worker process the server can kill (progress, a time
limit per stage, cancellation, per-job folders) without any web library;
:mod:`insetgan.app.choices` holds the networks a request may name and :mod:`insetgan.app.edits`
the body directions; :mod:`insetgan.app.page` builds the Gradio page over them (``pip install 'insetgan[app]'``).
"""
