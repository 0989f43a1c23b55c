"""The user jobs, one request each, shared by the command line, the web page and the scripts.

``options`` declares a request's options and builds requests from user-level values
(:func:`~insetgan.jobs.options.request_from`); ``requests`` holds one frozen request per job;
``compose`` (compose, sample-bodies), ``refine`` (refine-face), ``invert``, ``generate`` and
``train`` run a request into its files; ``sources`` (start latents, images), ``setup``
(networks, the user's face, start boxes), ``outputs`` (what a composition writes), ``report``
(every job's report, the headline numbers) and ``progress`` serve them.
"""
