"""``byod serve``: the service an app's backend, its users and its operators talk to.

``app.create_app`` builds the FastAPI app over a ``Workspace``: the ``/v1`` settings and
data-plane API (``api``), the end-user pages (``pages``), the operator dashboard
(``dashboard``), ``/metrics`` and ``/healthz``; ``service.Service`` is the one object the
routes and pages call; ``jobs`` runs connect, retry, update and disconnect in the background,
resumable after a crash; ``auth`` holds API tokens, signed user tokens, sessions and CSRF.
"""
