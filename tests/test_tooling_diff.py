"""``covreq diff``: answers that change between two rule trees or two git revisions."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from covreq.cli import main

ROOT = Path(__file__).resolve().parent.parent
DIFF = Path(__file__).resolve().parent / "fixtures" / "tooling" / "diff"
OLD, NEW, REQUESTS = str(DIFF / "old"), str(DIFF / "new"), str(DIFF / "requests.jsonl")


def test_changed_answers_are_grouped_by_policy_and_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", OLD, NEW, "--requests", REQUESTS]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "4 of 5 service line(s) in 3 request(s) answer differently"
    assert lines[2:5] == ["acme-imaging", "  70551",
                          f"    {REQUESTS}:2 line 1: pa_needed auth-needed -> no-auth; documentation [order] -> []"]
    assert f"    {REQUESTS}:2 line 2: policies [] -> [acme-imaging]" in lines  # 74176 newly governed
    assert not any(f"{REQUESTS}:1 " in line for line in lines)  # the emergency visit keeps its answer


def test_same_tree_has_no_changes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", OLD, OLD, "--requests", REQUESTS]) == 0
    assert capsys.readouterr().out == "no answer changes (5 service line(s) in 3 request(s))\n"


def test_json_and_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    main(["diff", OLD, NEW, "--requests", REQUESTS, "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert (report["requests"], report["lines"], len(report["changes"])) == (3, 5, 4)
    first = report["changes"][0]
    assert first["code"] == "70551" and first["changes"]["pa_needed"] == {"before": "auth-needed", "after": "no-auth"}
    main(["diff", OLD, NEW, "--requests", REQUESTS, "--format", "markdown"])
    out = capsys.readouterr().out
    assert out.startswith("### covreq diff: 4 of 5 service line(s) in 3 request(s) answer differently\n")
    assert "#### `acme-imaging`" in out and "| 74176 | 1 | " in out
    assert "pa_needed: no-auth → auth-needed<br>documentation: [] → [order, prior-imaging]" in out


def _with_beta(tree: Path, into: Path) -> Path:
    """A copy of ``tree`` with a second payer, beta, whose one policy governs 70551."""
    shutil.copytree(tree, into)
    (into / "beta").mkdir()
    (into / "beta" / "_payer.yaml").write_text("payer: beta\n")
    imaging = (Path(NEW) / "acme" / "imaging.yaml").read_text()
    (into / "beta" / "imaging.yaml").write_text(imaging.replace("acme", "beta").replace('70551-70553, "74176"', '"70551"'))
    return into


def test_a_payer_new_in_the_new_tree_is_one_summary_line_not_a_refusal_per_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 27, item 6): after a payer was added, every line of its requests repeated the
    old tree's long "unknown payer" refusal."""
    requests = tmp_path / "r.jsonl"
    beta = [json.dumps({"payer": "beta", "date_of_service": "2024-05-01", "place_of_service": pos,
                        "services": [{"code": "70551"}, {"code": "99213"}]}) for pos in ("11", "21", "22")]
    requests.write_text((DIFF / "requests.jsonl").read_text() + "\n".join(beta) + "\n")
    new = _with_beta(Path(NEW), tmp_path / "new")
    assert main(["diff", OLD, str(new), "--requests", str(requests)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [
        "4 of 5 service line(s) in 3 request(s) answer differently",
        "payer 'beta' new in this tree: 3 request(s), 6 service line(s) (3 unknown, 2 auth-needed, 1 no-auth)"]
    assert "unknown payer" not in out and "beta" not in "".join(out.splitlines()[2:])
    main(["diff", str(new), OLD, "--requests", str(requests), "--format", "json"])
    assert json.loads(capsys.readouterr().out)["payers"] == [
        {"payer": "beta", "status": "removed", "requests": 3, "lines": 6,
         "answers": {"unknown": 3, "auth-needed": 2, "no-auth": 1}}]
    assert main(["diff", OLD, OLD, "--requests", str(requests)]) == 0  # both trees refuse beta alike
    capsys.readouterr()
    assert main(["diff", str(new), str(_with_beta(Path(OLD), tmp_path / "old")), "--requests", str(requests),
                 "--format", "markdown"]) == 1
    assert "beta" not in capsys.readouterr().out.split("\n", 1)[1]  # a payer both know is compared as any other


def test_markdown_gives_one_row_per_kind_of_change_not_one_per_field_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 27, item 6): each changed service line took one markdown row per field (six
    for a newly governed code); lines that change alike now share one row that counts them."""
    requests = tmp_path / "r.jsonl"
    requests.write_text("".join(json.dumps({"payer": "acme", "date_of_service": "2024-05-01", "place_of_service": "22",
                                            "services": [{"code": "74176"}]}) + "\n" for _ in range(5)))
    assert main(["diff", OLD, NEW, "--requests", str(requests), "--format", "markdown"]) == 1
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 74176 ")]
    assert len(rows) == 1 and rows[0].startswith("| 74176 | 5 | ") and "policies: [] → [acme-imaging]" in rows[0]
    assert rows[0].endswith(f"`{requests}:1` #1, `{requests}:2` #1, `{requests}:3` #1 and 2 more |")


@pytest.mark.parametrize("args, message", [
    (["--requests", REQUESTS], "give OLD and NEW rule trees"),
    ([OLD, str(DIFF / "missing"), "--requests", REQUESTS], "does not load"),
    ([OLD, NEW, "--requests", str(DIFF / "nope.jsonl")], "cannot read"),
    (["--git", "HEAD", "--requests", REQUESTS], "--git needs REV1..REV2"),
])
def test_errors_exit_two(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", *args]) == 2
    assert message in capsys.readouterr().err


def test_requests_both_trees_refuse_are_not_reported_as_no_change(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 15, item 10): diff said "no answer changes" (exit 0) when both trees refused
    every request."""
    requests = tmp_path / "r.jsonl"
    requests.write_text('{"payer": "acme"}\n{"payer": "acme", "services": []}\n')
    assert main(["diff", OLD, NEW, "--requests", str(requests)]) == 2
    assert capsys.readouterr().err == (f"covreq diff: both trees refused every request, so nothing was compared; "
                                       f"the first: {requests}:1: services: must be a non-empty list of service lines\n")
    requests.write_text("\n")
    assert main(["diff", OLD, NEW, "--requests", str(requests)]) == 2
    assert capsys.readouterr().err == f"covreq diff: {requests} holds no request\n"
    requests.write_text('{"payer": "acme"}\n' + (DIFF / "requests.jsonl").read_text())
    assert main(["diff", OLD, OLD, "--requests", str(requests)]) == 0
    assert capsys.readouterr().out == ("no answer changes (6 service line(s) in 4 request(s); "
                                       "1 request(s) refused by both trees)\n")


def test_bad_request_line_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    requests = tmp_path / "r.jsonl"
    requests.write_text('{"payer": "acme", "services": [{"code": "70551"}]}\n\n{oops\n')
    assert main(["diff", OLD, NEW, "--requests", str(requests)]) == 2
    assert f"{requests}:3:2: invalid JSON" in capsys.readouterr().err


def test_two_git_revisions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "policies"
    git = ["git", "-c", "user.name=covreq tests", "-c", "user.email=tests@covreq.test", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    shutil.copytree(OLD, repo / "rules")
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "old"], cwd=repo, check=True)
    shutil.rmtree(repo / "rules")
    shutil.copytree(NEW, repo / "rules")
    (repo / "rules" / "acme" / "draft.yaml").write_text("not: [valid")  # uncommitted: must not be read
    subprocess.run([*git, "add", "rules/acme/imaging.yaml"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "new"], cwd=repo, check=True)
    monkeypatch.chdir(repo / "rules")  # revisions are read from the repository that holds the cwd
    assert main(["diff", "--git", "HEAD~1..HEAD", "--path", ".", "--requests", REQUESTS]) == 1
    assert capsys.readouterr().out.startswith("4 of 5 service line(s)")
    monkeypatch.chdir(repo)
    assert main(["diff", "--git", "HEAD..HEAD", "--requests", REQUESTS]) == 0
    assert main(["diff", "--git", "HEAD~1..no-such-rev", "--requests", REQUESTS]) == 2
    assert "git archive" in capsys.readouterr().err


def test_bundled_rules_show_the_effect_of_an_edit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edited = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", edited)
    policy = edited / "medicare" / "opd" / "blepharoplasty.yaml"
    policy.write_text(policy.read_text().replace('opd_pos: ["19", "22"]', 'opd_pos: ["19", "22", "24"]'))
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(json.dumps({"payer": "medicare", "date_of_service": "2024-03-01",
                                              "place_of_service": pos, "services": [{"code": "15823"}]})
                                  for pos in ("11", "22", "24")) + "\n")
    assert main(["diff", str(ROOT / "rules"), str(edited), "--requests", str(requests)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "1 of 3 service line(s) in 3 request(s) answer differently"
    assert out[2:4] == ["medicare-opd-blepharoplasty", "  15823"]
    assert out[4].startswith(f"    {requests}:3 line 1: pa_needed no-auth -> auth-needed; documentation [] -> [")
    if shutil.which("git"):
        assert main(["diff", "--git", "HEAD..HEAD", "--path", str(ROOT / "rules"), "--requests", str(requests)]) == 0
