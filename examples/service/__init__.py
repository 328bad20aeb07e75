"""An HTTP service with three task apps, in the shape of the original design.

- ``critical`` and ``scheduler``: each on RabbitMQ with its own exchange and status
  store; the API sends their tasks by name and worker pools (``workers/``) run them.
- ``internal``: on the embedded ``memory://`` broker and store; its worker runs in the
  background of the API process itself, started and stopped with the server.

``settings.py`` reads each app's variables (``CRITICAL_*``, ``SCHEDULER_*``),
``container.py`` builds the apps, ``api.py`` is the FastAPI app, ``audit.py`` holds
the tasks that run in-process. Nothing here imports ``workers/``.
"""
