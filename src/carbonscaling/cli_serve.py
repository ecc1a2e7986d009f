"""``carbonscaling serve``: the web calculator and JSON API (needs the ``[web]`` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from .cli import app, integer
from .errors import InputError


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", metavar="ADDR", help="Interface to listen on (0.0.0.0: all).")] = "127.0.0.1",
    port: Annotated[str, typer.Option("--port", "-p", metavar="PORT", help="TCP port, 1..65535.")] = "8000",
    workers: Annotated[str, typer.Option(
        "--max-concurrent", metavar="N", help="Searches run at once (each may hold a few hundred MB), 1..64.")] = "2",
) -> None:
    """Serve the calculator page (http://HOST:PORT/) and the JSON API (/api, schema at /docs)."""
    from .carbon import check_number

    port_n = int(check_number("port", integer(port), 1, 65535, integer=True))
    conc = int(check_number("max_concurrent", integer(workers), 1, 64, integer=True))
    try:
        import uvicorn

        from .service.app import create_app
    except ImportError as err:
        raise InputError("serve", f"needs the web extra: pip install 'carbonscaling[web]' ({err.name} missing)") from None
    typer.echo(f"carbonscaling: serving http://{host}:{port_n}/ (API schema: /docs); Ctrl-C stops", err=True)
    uvicorn.run(create_app(max_concurrent=conc), host=host, port=port_n, log_level="warning")
