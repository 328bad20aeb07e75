"""The worker side of the example deployment: task modules that ``taskq worker`` loads.

    taskq worker workers.emails:app --concurrency 16 --tasks 'emails.*'

The API (``examples/api.py``) sends these tasks by name and never imports this package:
senders and workers share task names and the wire format, not code.
"""
