"""docs/operations.md on fleets: the Kubernetes example runs a real command against real endpoints,
the metrics table lists what /metrics serves, the bundle examples are what the code gives."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.loading.bundle import build
from covreq.cli import build_parser, main
from service.bundles import MAX_DOWNLOAD_BYTES
from service.decision_log import DecisionLog, SinkConfig
from service.metrics import Metrics
from tests.service.test_bundle_serving import BundleServer, Offer, server, service, trees  # noqa: F401 (fixture)
from tests.service.test_operations_doc import DOC, EXAMPLES, _shape
from tests.test_bundle import key_pair


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLES["kubernetes"])


def test_the_kubernetes_example_runs_covreq_serve_with_options_that_exist(deployment: dict[str, Any]) -> None:
    assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    container = spec["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["covreq", "serve"]
    args = build_parser().parse_args(container["command"][1:])  # exits (fails the test) on an unknown option
    assert args.rules is None and args.bundle is None and args.host == "0.0.0.0"  # rules by environment
    assert container["ports"][0]["containerPort"] == args.port
    documented = set(re.findall(r"^\| `(COVREQ_[A-Z_]+)` \|", DOC, re.M))
    assert {variable["name"] for variable in container["env"]} <= documented
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert env["COVREQ_BUNDLE_URL"].startswith("https://")
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for path in ("COVREQ_BUNDLE_PUBLIC_KEY", "COVREQ_API_KEYS", "COVREQ_DTR_KEYS"):
        assert str(Path(env[path]).parent) in mounts, path


def test_the_kubernetes_example_runs_the_image_read_only_as_its_user_with_the_admin_token_from_a_secret(
        deployment: dict[str, Any]) -> None:
    from tests.test_container_image import IMAGE, environment
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == IMAGE.one("USER")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    env = {**environment(IMAGE), **{v["name"]: v["value"] for v in container["env"] if "value" in v}}
    assert writable == {"/tmp", *json.loads(IMAGE.one("VOLUME"))}
    for path in (Path(env["COVREQ_AUDIT"]).parent, Path(env["COVREQ_BUNDLE_DIR"])):
        assert any(Path(w) == path or Path(w) in path.parents for w in writable), path
    (admin,) = [v for v in container["env"] if v["name"] == "COVREQ_ADMIN_TOKEN"]
    assert admin["valueFrom"]["secretKeyRef"]["name"] == "covreq-admin" and "value" not in admin
    assert "kubectl create secret generic covreq-admin" in DOC
    assert set(container["resources"]["requests"]) == {"cpu", "memory"} and container["resources"]["limits"]["memory"]


def test_the_kubernetes_probes_and_scrape_path_are_endpoints_of_the_service(
        deployment: dict[str, Any], client) -> None:
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    paths = set()
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] in port_names
        paths.add(get["path"])
    annotations = template["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) in port_names.values()
    paths.add(annotations["prometheus.io/path"])
    assert paths == {"/readyz", "/healthz", "/metrics"}
    for path in paths:
        assert client.get(path).status_code == 200, path
    assert client.get("/readyz").json()["status"] == "ready"
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pause < template["spec"]["terminationGracePeriodSeconds"]


def test_the_metrics_table_lists_every_metric_the_service_serves() -> None:
    table = re.search(r"## Metrics\n(.*?)\n## ", DOC, re.S).group(1)  # type: ignore[union-attr]
    documented = {m[0]: set(filter(None, re.split(r"[`, ]+", m[2]))) for m in
                  re.findall(r"^\| `((?:covreq|process|python)_\w+)` \| (\w+) \|([^|]*)\|", table, re.M)}
    served = {}
    metrics = Metrics()
    DecisionLog(SinkConfig("http://127.0.0.1:9/", {}, 1, 1, 0.0), metrics.registry)  # served with a sink configured
    for family in metrics.registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        served[family.name + suffix] = {label for s in family.samples for label in s.labels if label != "le"}
    labels_with_pid = {name: labels - {"pid"} for name, labels in documented.items()}
    for name, labels in served.items():
        assert name in labels_with_pid, f"{name} is not in the metrics table"
        assert labels <= labels_with_pid[name], name
    assert set(documented) == set(served)


def _normal(text: str) -> str:
    """A line of ``covreq bundle`` output with its digests and file count left out."""
    return re.sub(r"\d+ file", "N file", re.sub(r"[0-9a-f]{8,}(\.\.\.[0-9a-f]+)?", "HEX", text))


def test_the_bundle_examples_are_what_covreq_bundle_and_readyz_give(server: BundleServer, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert f"at most {MAX_DOWNLOAD_BYTES // 2**20} MiB" in DOC
    command, printed = re.search(r"\n(covreq bundle rules/ .*)\n# (.*)", DOC).groups()  # type: ignore[union-attr]
    (tmp_path / "ops-bundle-key.pem").write_bytes(key_pair()[0])
    argv = command.split()[1:]
    argv[argv.index("rules.tar.gz")] = str(tmp_path / "rules.tar.gz")
    argv[argv.index("ops-bundle-key.pem")] = str(tmp_path / "ops-bundle-key.pem")
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().replace(f"{tmp_path}/", "")
    assert _normal(out) == _normal(printed)

    one, _, _ = trees(tmp_path)
    server.offer = Offer(build(one)[0], '"v1"')
    ready = service(server, tmp_path, None).get("/readyz").json()
    assert _shape(ready) == _shape(json.loads(EXAMPLES["readyz-bundle"]))
