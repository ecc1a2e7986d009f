"""What is generated from the run description (:mod:`carbonscaling.specs`), and checked by the tests.

* the typer parameters of ``carbonscaling estimate`` and ``carbonscaling carbon``, written
  between markers into cli_estimate.py and cli.py (written out, not built at run time, so
  that ``carbonscaling --help`` does not import pydantic);
* the option types (``PueOpt``, ``CiOpt``, ...) of the commands that take a subset of the
  options (the decision commands of cli_decide.py and cli_grid.py, ``regions``), written into cli.py;
* the options table of docs/run-spec.md.

``python -m carbonscaling.specs --write-cli --write-docs`` rewrites both.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .specs import (cli_blocks, cli_option, cli_type_name, cli_types, data_default_text, flat_fields, help_text, metavar,
                    range_text)


def _option_type(name: str) -> str:
    """``Annotated[Optional[...], typer.Option(...)]`` of one flat field: its option, alias,
    metavar and help, all from the field's metadata."""
    info = flat_fields()[name][1]
    opt = cli_option(name, info)
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    names = [opt] + (["--" + extra["alias"]] if extra.get("alias") else [])
    if info.annotation is bool:
        flag = f"{opt}/--no-{opt[2:]}"
        return f"Annotated[Optional[bool], typer.Option({flag!r}, help={help_text(name, info)!r})]"
    names_src = ", ".join(repr(n) for n in names)
    return (f"Annotated[Optional[str], typer.Option({names_src}, metavar={metavar(info)!r}, "
            f"help={help_text(name, info)!r})]")


def cli_block(command: str = "estimate") -> str:
    """The typer parameters of ``command`` generated from the specs (text is read by
    :func:`cli_values`; numbers are converted there so the spec words every error)."""
    return "".join(f"    {name}: {_option_type(name)} = None,\n" for name in cli_blocks()[command][1])


def cli_types_block(group: str) -> str:
    """Module-level option types (``PueOpt = Annotated[...]``) for commands that take a subset."""
    return "".join(f"{cli_type_name(name)} = {_option_type(name)}\n" for name in cli_types()[group][1])


def _markers(command: str) -> tuple[str, str]:
    return (f"    # BEGIN generated {command} options (python -m carbonscaling.specs --write-cli)\n",
            f"    # END generated {command} options\n")


def _type_markers(group: str) -> tuple[str, str]:
    return (f"# BEGIN generated {group} option types (python -m carbonscaling.specs --write-cli)\n",
            f"# END generated {group} option types\n")


def _split(command: str, types: bool = False) -> tuple[Path, str, str, str]:
    path = Path(__file__).with_name((cli_types() if types else cli_blocks())[command][0])
    text = path.read_text(encoding="utf-8")
    begin, end = (_type_markers if types else _markers)(command)
    head, rest = text.split(begin, 1)
    block, tail = rest.split(end, 1)
    return path, head + begin, block, end + tail


def write_cli() -> bool:
    """Rewrite the generated blocks of the CLI modules; True if any changed."""
    changed = False
    targets = [(c, False, cli_block) for c in cli_blocks()] + [(g, True, cli_types_block) for g in cli_types()]
    for name, types, make in targets:
        path, head, old, tail = _split(name, types)
        if old != make(name):
            path.write_text(head + make(name) + tail, encoding="utf-8")
            changed = True
    return changed


def cli_block_in_file(command: str = "estimate", types: bool = False) -> str:
    """The block between ``command``'s markers as the file has it (``types``: an option-types group)."""
    return _split(command, types)[2]


# ---- the options table in docs/run-spec.md --------------------------------------------------
DOC_BEGIN, DOC_END = "<!-- BEGIN options (python -m carbonscaling.specs --write-docs) -->\n", "<!-- END options -->\n"
_SCENARIO_KEY = {"recipe": "options.", "pins": "pins.", "carbon": "carbon.", "hardware": "", "search": ""}


def options_table() -> str:
    """Markdown: every option of a run, its part, CLI option, scenario key, range and default."""
    rows = ["| option (API) | part | CLI | scenario | allowed | default | meaning |",
            "|---|---|---|---|---|---|---|"]
    for name, (part, info) in flat_fields().items():
        dflt = info.default
        dflt = "-" if dflt is None else (f"{dflt:g}" if isinstance(dflt, float) else str(dflt).lower()
                                        if isinstance(dflt, bool) else ",".join(dflt) if isinstance(dflt, tuple)
                                        else str(dflt))
        stated = data_default_text(name)
        if stated:  # a default from a data file: its value and the file
            value, file = stated.rsplit(", ", 1)
            dflt = f"{value} ({file})"
        allowed = "true \\| false" if info.annotation is bool else (range_text(info) or
                                                                    metavar(info).replace("|", " \\| "))
        scen = "models." + name if part is None else _SCENARIO_KEY[part] + name
        if name == "model":
            scen = "-"
        desc = (info.description or "").replace("|", "\\|")
        cli = cli_option(name, info) if info.annotation is not bool else f"{cli_option(name, info)}/--no-..."
        rows.append(f"| `{name}` | {part or 'RunSpec'} | `{cli}` | `{scen}` | {allowed} | {dflt} | {desc} |")
    return "\n".join(rows) + "\n"


def _doc_file() -> Path:
    return Path(__file__).resolve().parents[2] / "docs" / "run-spec.md"


def write_docs() -> bool:
    """Rewrite the options table of docs/run-spec.md; True if it changed."""
    path = _doc_file()
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(DOC_BEGIN, 1)
    _old, tail = rest.split(DOC_END, 1)
    new = head + DOC_BEGIN + options_table() + DOC_END + tail
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if "--write-cli" in args:
        print("CLI options updated" if write_cli() else "CLI options already up to date")
    if "--write-docs" in args:
        print("docs/run-spec.md updated" if write_docs() else "docs/run-spec.md already up to date")
    if not args:
        sys.stdout.write(cli_block())


if __name__ == "__main__":  # pragma: no cover
    main()
