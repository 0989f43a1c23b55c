"""``insetgan app``: a local web page for the three jobs (compose, many bodies, fix a face).

:mod:`insetgan.app.runner` runs one job (per-job folder, progress, cancellation) without any
web library; :mod:`insetgan.app.page` builds the Gradio page over it (``pip install
'insetgan[app]'``).
"""
