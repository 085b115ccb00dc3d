"""The attacker's suite, reloads: whatever tree a reload meets, and whatever the loader does with
it, the last good rule set keeps answering, the failure is logged and shown by /readyz, and no
open endpoint echoes what the files say.

Regression tests are named after the reports of issue 11 they close.
"""
from __future__ import annotations

import json
import logging
import shutil
import signal
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from admin import ADMIN
from serving import served, wait_until

import engine
from service.holder import RuleSetHolder

EYELID = "acme/eyelid-surgery.yaml"
REQUEST = {"payer": "acme", "place_of_service": "22", "services": [{"code": "15823"}]}
DEEP = "not " * 400 + 'place_of_service == "22"'
RELOADS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _break(rules: Path, when: str) -> None:
    """Give the eyelid policy's first rule the condition ``when``."""
    path = rules / EYELID
    lines = path.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.lstrip().removeprefix("- ").startswith("when:"))
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines[at] = f"{indent}{'- ' if lines[at].lstrip().startswith('-') else ''}when: {json.dumps(when)}\n"
    path.write_text("".join(lines))


def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", "") == event]


def test_regression_deep_not_reload_is_a_500(rules_dir: Path, make_client, caplog) -> None:
    client = make_client(rules_dir)
    good = client.get("/readyz").json()["ruleset"]
    _break(rules_dir, DEEP)
    with caplog.at_level(logging.ERROR, logger="covreq.reload"):
        refused = client.post("/admin/reload", headers=ADMIN)
    assert refused.status_code == 422, refused.text
    (problem,) = refused.json()["error"]["problems"]
    assert "eyelid-surgery.yaml:" in problem and ": E-condition-too-deep: " in problem
    assert [r.problem for r in _events(caplog, "reload-failed")] == [problem]
    ready = client.get("/readyz").json()
    assert ready["status"] == "degraded" and ready["ruleset"] == good
    assert client.post("/v1/requirements", json=REQUEST).json()["ruleset"] == good


@pytest.mark.parametrize("failure", [RecursionError("maximum recursion depth exceeded"), MemoryError(),
                                     KeyError("policy"), ValueError("bad"), RuntimeError("loader bug")])
def test_every_reload_failure_is_logged_and_shown_whatever_the_exception(failure: BaseException, caplog) -> None:
    good = engine.load(Path(__file__).parent / "fixtures" / "rules")
    calls = iter([good])

    def loader(path: str) -> engine.RuleSet:
        for ruleset in calls:
            return ruleset
        raise failure

    holder = RuleSetHolder("rules/", loader)
    with caplog.at_level(logging.ERROR, logger="covreq.reload"):
        refused = holder.reload()
    assert refused is not None and holder.current is good and holder.last_error is refused
    assert refused.problems == [f"rules/: E-internal: the loader failed ({type(failure).__name__}); "
                                "the log has the traceback"]
    assert refused.as_dict(messages=False)["problems"] == ["rules/: E-internal"]
    (crashed,) = _events(caplog, "reload-crashed")
    assert crashed.exc_info and crashed.exc_info[0] is type(failure)
    assert [r.problem for r in _events(caplog, "reload-failed")] == refused.problems


def test_readyz_shows_where_and_which_code_never_what_a_file_says(rules_dir: Path, make_client) -> None:
    client = make_client(rules_dir)
    (rules_dir / "acme" / "leaky.yaml").write_text('id: ["hunter2-password"]\n')
    assert client.post("/admin/reload", headers=ADMIN).status_code == 422
    ready = client.get("/readyz")
    assert "hunter2" not in ready.text
    places = ready.json()["last_reload_error"]["problems"]
    assert places and all(p.split(": ")[-1].startswith("E-") and p.count(": ") == 1 for p in places)
    assert "hunter2" in client.get("/v1/ruleset").text  # the full messages, on the v1 API


def test_regression_symlinks_out_of_the_tree_are_echoed_by_readyz(rules_dir: Path, tmp_path: Path,
                                                                   make_client) -> None:
    client = make_client(rules_dir)
    secret = tmp_path / "secret.yaml"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (rules_dir / "acme" / "passwd.yaml").symlink_to(secret)
    refused = client.post("/admin/reload", headers=ADMIN)
    assert refused.status_code == 422
    assert refused.json()["error"]["problems"] == [
        f"{rules_dir / 'acme' / 'passwd.yaml'}:1:1: E-link: a symbolic link to a file outside the rule tree; not read"]
    ready = client.get("/readyz")
    assert "root:x" not in ready.text and ready.json()["last_reload_error"]["problems"] == [
        f"{rules_dir / 'acme' / 'passwd.yaml'}:1:1: E-link"]


@RELOADS
@given(steps=st.lists(st.sampled_from(["good-a", "good-b", "deep", "duration", "yaml", "link", "crash"]),
                      min_size=1, max_size=6))
def test_any_sequence_of_reloads_keeps_the_last_good_rule_set(tmp_path_factory, steps: list[str]) -> None:
    root = tmp_path_factory.mktemp("seq")
    rules = root / "rules"
    shutil.copytree(Path(__file__).parent / "fixtures" / "rules", rules)
    original = (rules / EYELID).read_text()
    crash = {"now": False}

    def loader(path: str) -> engine.RuleSet:
        if crash["now"]:
            raise RuntimeError("loader bug")
        return engine.load(path)

    holder = RuleSetHolder(str(rules), loader)
    expected = holder.current.digest
    for step in steps:
        (rules / EYELID).write_text(original)
        (rules / "acme" / "link.yaml").unlink(missing_ok=True)
        crash["now"] = step == "crash"
        if step == "good-b":
            (rules / EYELID).write_text(original.replace("Eyelid surgery", "Eyelid operations"))
        elif step == "deep":
            _break(rules, DEEP)
        elif step == "duration":
            _break(rules, "date_of_service <= patient.birth_date + 99999999999 years")
        elif step == "yaml":
            (rules / EYELID).write_text("id: [broken\n")
        elif step == "link":
            (root / "outside.yaml").write_text(original)
            (rules / "acme" / "link.yaml").symlink_to(root / "outside.yaml")
        failure = holder.reload()
        if step.startswith("good"):
            assert failure is None
            expected = holder.current.digest
        else:
            assert failure is not None and failure.places and holder.last_error is failure
        assert holder.current.digest == expected
        assert holder.current.evaluate(REQUEST)["ruleset"] == expected


def test_regression_sighup_with_a_deep_tree_fails_silently(rules_dir: Path, tmp_path: Path) -> None:
    with served(tmp_path, "--rules", str(rules_dir)) as running:
        good = httpx.get(f"{running.base}/readyz").json()["ruleset"]
        _break(rules_dir, DEEP)
        running.process.send_signal(signal.SIGHUP)
        ready = wait_until(lambda: (r := httpx.get(f"{running.base}/readyz").json())["status"] == "degraded" and r)
        assert ready["ruleset"] == good and ready["last_reload_error"]["problems"][0].endswith(": E-condition-too-deep")
    failed = [e for e in running.events() if e.get("event") == "reload-failed"]
    assert len(failed) == 1 and "E-condition-too-deep" in failed[0]["problem"]
    assert "Traceback" not in running.log.read_text()
