"""The user jobs: requests built from user-level options (``requests``) and the functions that
run them into output files (``running``)."""
