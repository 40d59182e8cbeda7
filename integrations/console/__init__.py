"""Console: what integrations adds to the operator console (the Django admin) beyond its model
admins: its panels on the "Start of the day" home page (panels.py: connections in error, installs
about to expire, the webhook backlog, what is paused) and the list filters they link to
(filters.py). May use the models and the core's admin_console registry; nothing else."""
