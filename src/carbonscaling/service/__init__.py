"""``carbonscaling serve``: a JSON API and one web page over the package (extra ``[web]``).

* :mod:`.schemas` - the request models (what the API accepts, with ranges in the OpenAPI schema);
* :mod:`.app` - the FastAPI application: ``/api/estimate``, ``/api/carbon``, the catalogs,
  one page (``static/``: plain HTML, JavaScript and CSS, charts drawn as SVG by the page);
* errors: bad input is HTTP 422 with one line naming the field (``{"error", "field",
  "message"}``); a valid request with no answer is HTTP 200 with ``"feasible": false`` and
  the binding constraint (docs/service.md).

FastAPI and uvicorn are imported here only, never by the CLI at start-up.
"""

from __future__ import annotations


def create_app():
    """The FastAPI application (see :mod:`.app`)."""
    from .app import create_app as _create

    return _create()
