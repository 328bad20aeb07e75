"""The example deployment's worker app under the path the issue's CLI example uses:

    taskq worker examples.app:app --concurrency 16 --tasks 'emails.*'

The tasks themselves live in ``workers/`` (worker-side code, kept apart from the API);
this module only points at them. The API (``examples/api.py``) imports neither.
"""

from workers.emails import app

__all__ = ["app"]
