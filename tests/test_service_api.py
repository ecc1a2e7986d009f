"""The JSON API as clients meet it (fastapi TestClient): answers equal the Python API's,
bad input is HTTP 422 with one line naming the field, infeasible requests are answers."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

import carbonscaling as cs  # noqa: E402
from carbonscaling.service import create_app  # noqa: E402

MODEL_YAML = """\
model:
  name: my-7b
  d_model: 4096
  n_layers: 32
  n_heads: 32
  d_ff: 11008
  vocab: 32000
  seq_len: 4096
  tokens: 2e12
"""


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app())


def test_estimate_equals_python_api(client):
    r = client.post("/api/estimate", json={"model": "megatron-1.7b", "device": "A100-80GB", "region": "us-east5",
                                           "deadline_days": 30})
    assert r.status_code == 200
    got = r.json()
    want = json.loads(json.dumps(cs.estimate(model="megatron-1.7b", device="A100-80GB", region="us-east5",
                                             deadline_days=30).to_dict(), default=str))
    assert got.pop("feasible") is True
    assert got["layout"] == want["layout"]
    assert got["carbon"] == want["carbon"]
    assert got["performance"] == want["performance"]
    assert got["energy_kwh"] == want["energy_kwh"]


def test_preset_and_projection(client):
    r = client.post("/api/estimate", json={"preset": "cs-v1", "d_model": 4096, "device": "B100", "years_ahead": 2,
                                           "ci": 100, "deadline_days": 90})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["hardware"]["name"] == "B100+2y"
    assert d["breakdown"]["carbon"]["ci_g_per_kwh"] == 100
    c = d["carbon"]
    assert c["total_low_tco2e"] <= c["total_tco2e"] <= c["total_high_tco2e"]
    assert c["total_tco2e"] == pytest.approx(c["operational_tco2e"] + c["embodied_tco2e"])


def test_interleave_is_an_alias_of_vp(client):
    a = client.post("/api/estimate", json={"model": "megatron-1.7b", "device": "A100-80GB", "interleave": 1})
    b = client.post("/api/estimate", json={"model": "megatron-1.7b", "device": "A100-80GB", "vp": 1})
    assert a.status_code == b.status_code == 200
    assert a.json()["layout"] == b.json()["layout"]


def test_pasted_model_yaml(client):
    r = client.post("/api/estimate", json={"model_yaml": MODEL_YAML, "device": "H100"})
    assert r.status_code == 200, r.text
    assert r.json()["model"]["name"] == "my-7b"
    assert r.json()["model"]["d_model"] == 4096


@pytest.mark.parametrize("body, field", [
    ({"model": "no-such-model"}, "model"),
    ({"model": "llama3.1-8b", "device": "H900"}, "device"),
    ({"model": "llama3.1-8b", "tp": 0}, "tp"),
    ({"model": "llama3.1-8b", "deadline_days": -1}, "deadline_days"),
    ({"model": "llama3.1-8b", "deadline_days": "soon"}, "deadline_days"),
    ({"model": "llama3.1-8b", "ci": "atlantis"}, "ci"),
    ({"model": "llama3.1-8b", "ci": 5000}, "ci"),
    ({"model": "llama3.1-8b", "region": "mars-north1"}, "region"),
    ({"model": "llama3.1-8b", "precision": "fp3"}, "precision"),
    ({"model": "llama3.1-8b", "bogus": 1}, "bogus"),
    ({"preset": "cs-v1"}, "d_model"),
    ({"preset": "cs-v1", "d_model": 100}, "d_model"),
    ({"model_yaml": "d_model: [1, 2"}, "model_yaml"),
    ({"model_yaml": "d_model: 4096\nn_layers: -3"}, "model_yaml.n_layers"),
    ({"model_yaml": "name: x", "model": "llama3.1-8b"}, "model_yaml"),
    ({"model": "/etc/models/secret.yaml"}, "model"),
    ({"model": "llama3.1-8b", "device": "../hardware.yaml"}, "device"),
    ({"model": "llama3.1-8b", "pp": 4, "recompute": "full", "recompute_layers": 20}, "recompute_layers"),
    ({"model": "llama3.1-8b", "etp": 2}, "etp"),
])
def test_bad_input_is_422_naming_the_field(client, body, field):
    r = client.post("/api/estimate", json=body)
    assert r.status_code == 422, r.text
    d = r.json()
    assert d["field"] == field, d
    assert d["error"].startswith(f"{field}: ") and "\n" not in d["error"]


def test_malformed_json_and_wrong_types(client):
    r = client.post("/api/estimate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    r = client.post("/api/estimate", json=[1, 2])
    assert r.status_code == 422
    r = client.post("/api/estimate", content=b'{"model": "llama3.1-8b", "pue": NaN}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "pue"
    r = client.get("/api/regions", params={"year": "last"})
    assert r.status_code == 422 and r.json()["field"] == "year"


def test_infeasible_is_an_answer_with_the_binding_constraint(client):
    r = client.post("/api/estimate", json={"preset": "cs-v1", "d_model": 98304, "device": "B100"})
    assert r.status_code == 200
    d = r.json()
    assert d["feasible"] is False
    assert d["constraint"] == "deadline"
    assert "deadline" in d["reason"]


def test_carbon_equals_python_api(client):
    body = {"model": "bloom-176b", "device": "A100-80GB", "n_devices": 384, "device_hours": 1_082_990,
            "utilization": 0.3, "pue": 1.2, "ci": 57}
    r = client.post("/api/carbon", json=body)
    assert r.status_code == 200, r.text
    want = cs.run_carbon("bloom-176b", "A100-80GB", n_devices=384, device_hours=1_082_990, utilization=0.3,
                         pue=1.2, ci=57)
    assert r.json()["total_tco2e"] == want.total_tco2e
    r = client.post("/api/carbon", json={**body, "duration_h": 10})
    assert r.status_code == 422 and r.json()["field"] == "duration_h"


def test_catalogs(client):
    models = client.get("/api/models").json()
    from carbonscaling.scaling import model_names

    assert {m["name"] for m in models} == set(model_names())
    devices = client.get("/api/devices").json()
    assert "H100" in {d["name"] for d in devices}
    regions = client.get("/api/regions").json()
    assert any(r["region"] == "us-east5" for r in regions)
    opts = client.get("/api/options").json()
    assert "bf16" in opts["precisions"] and "cs-v1" in opts["presets"]
    assert client.get("/api/health").json()["status"] == "ok"


def test_page_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200 and "<form" in r.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/openapi.json").json()["paths"]["/api/estimate"]["post"]


def test_list_options_take_the_clis_comma_separated_string(client):
    """``recompute_modules`` / ``cuda_graph_scope`` as a JSON list or as the CLI's string: one answer;
    a wrong value is 422 naming the field and the allowed values (it was 'not a valid tuple')."""
    base = {"model": "llama3.1-8b", "device": "H100-SXM", "deadline_days": 60}
    as_list = client.post("/api/estimate", json={**base, "recompute_modules": ["core_attn", "mlp"],
                                                 "cuda_graph_scope": ["attn", "mlp"]})
    as_text = client.post("/api/estimate", json={**base, "recompute_modules": "mlp,core_attn",
                                                 "cuda_graph_scope": "attn,mlp"})
    assert as_list.status_code == as_text.status_code == 200
    assert as_list.json()["breakdown"]["step"] == as_text.json()["breakdown"]["step"]
    assert as_list.json()["settings"] == as_text.json()["settings"]
    eager = client.post("/api/estimate", json={**base, "cuda_graph_scope": "none"})
    assert eager.status_code == 200 and eager.json()["settings"] != as_list.json()["settings"]
    bad = client.post("/api/estimate", json={**base, "cuda_graph_scope": "attn,bogus"})
    assert bad.status_code == 422
    body = bad.json()
    assert body["field"] == "cuda_graph_scope" and "allowed: none, full_iteration" in body["message"]
    assert "\n" not in body["error"]


def test_single_list_option_strings_as_the_cli_takes_them(client):
    """``"attn"`` and ``"none"`` (the CLI's ``--cuda-graph-scope attn`` / ``none``) are one answer each,
    equal to the JSON list form; ``"mlp"`` alone for recompute_modules too."""
    base = {"model": "llama3.1-8b", "device": "H100-SXM", "deadline_days": 60}
    for field, text, as_list in (("cuda_graph_scope", "attn", ["attn"]), ("cuda_graph_scope", "none", []),
                                 ("recompute_modules", "mlp", ["mlp"])):
        a = client.post("/api/estimate", json={**base, field: text})
        b = client.post("/api/estimate", json={**base, field: as_list})
        assert a.status_code == b.status_code == 200, (field, text, a.json())
        assert a.json()["settings"]["options"][field] == as_list
        assert a.json()["breakdown"]["step"] == b.json()["breakdown"]["step"]


@pytest.mark.parametrize("field, value, says", [
    ("cuda_graph_scope", 5, "expected a list or a comma-separated string of scopes"),
    ("cuda_graph_scope", None, "expected a list or a comma-separated string of scopes"),
    ("cuda_graph_scope", ["attn", "bogus"], "unknown scope 'bogus'"),
    ("cuda_graph_scope", "attn,full_iteration", "cannot be combined"),
    ("recompute_modules", {"mlp": True}, "expected a list or a comma-separated string of modules"),
    ("recompute_modules", ["mlp", 3], "unknown module 3"),
    ("recompute_modules", "mlp,attn", "unknown module 'attn'"),
])
def test_a_wrong_list_option_is_one_422_naming_the_field_and_the_allowed_values(client, field, value, says):
    from carbonscaling.perf.options import CUDA_GRAPH_SCOPES, RECOMPUTE_MODULES

    r = client.post("/api/estimate", json={"model": "llama3.1-8b", "device": "H100-SXM", field: value})
    assert r.status_code == 422
    body = r.json()
    assert body["field"] == field and says in body["message"] and "\n" not in body["error"]
    assert "valid tuple" not in body["message"]
    if "cannot be combined" not in says:
        allowed = ("none, " + ", ".join(CUDA_GRAPH_SCOPES) if field == "cuda_graph_scope"
                   else ", ".join(RECOMPUTE_MODULES))
        assert f"allowed: {allowed}" in body["message"]
