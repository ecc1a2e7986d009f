"""User files (model, device, scenario, runs): size and alias-expansion limits, one line, fast."""

from __future__ import annotations

import time

import pytest

from carbonscaling._data import MAX_USER_FILE_BYTES, MAX_YAML_NODES, parse_user_yaml
from carbonscaling.cli import main
from carbonscaling.errors import InputError


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs" YAML: each level lists the previous one nine times (9^levels values)."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + f"\nd_model: 4096\nn_layers: 32\naliases: *a{levels - 1}\n"


CASES = {
    "bomb": ("bomb.yaml", alias_bomb(), "more than 20,000 YAML values"),
    "big": ("big.yaml", "d_model: 4096\nnote: [" + "1," * (MAX_USER_FILE_BYTES // 2) + "1]\n", "the limit is"),
    "deep": ("deep.yaml", "x: " + "[" * 20000 + "]" * 20000 + "\n", "levels deep"),
    "binary": ("bin.yaml", None, "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("opt", ["--model-file", "--device-file", "scenario", "--runs"])
def test_hostile_files_are_one_line_and_fast(case, opt, tmp_path, capsys):
    name, text, needle = CASES[case]
    p = tmp_path / name
    if text is None:
        p.write_bytes(b"\xff\xfe\x00bad")
    else:
        p.write_text(text, encoding="utf-8")
    if opt == "--runs":
        p = p.rename(tmp_path / "runs.csv")
        if case in ("bomb", "deep"):
            return  # a CSV has no aliases or nesting
        argv = ["validate", "--runs", str(p)]
    elif opt == "scenario":
        argv = ["sweep", str(p), "--no-progress"]
    elif opt == "--model-file":
        argv = ["estimate", "--model-file", str(p)]
    else:
        argv = ["carbon", "--device-file", str(p), "-n", "8", "-u", "0.5", "--duration-hours", "1"]
    t0 = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert time.perf_counter() - t0 < 3


def test_limits_leave_room_for_real_files():
    # anchors and aliases are fine in moderation (shared settings in a scenario)
    data = parse_user_yaml("base: &b {device: H100}\nseries: [{<<: *b, label: a}, {<<: *b, label: b}]\n", "scenario")
    assert data["series"][1] == {"device": "H100", "label": "b"}
    with pytest.raises(InputError) as err:
        parse_user_yaml(alias_bomb(5), "model_file")  # 9^5 = 59,049 values
    assert err.value.field == "model_file"
    assert len(parse_user_yaml(alias_bomb(3), "model_file")["aliases"]) == 9  # ~1,600 values: allowed
    with pytest.raises(InputError, match="larger than"):
        parse_user_yaml("x" * (MAX_USER_FILE_BYTES + 1), "scenario")
    assert parse_user_yaml("", "scenario") is None
