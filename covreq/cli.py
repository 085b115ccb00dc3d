"""The ``covreq`` command line: validate, test, lint, diff, fmt, eval, batch, bundle, schema, serve, report and hash-key.

Each command's logic lives in its own module; this one only wires arguments.
Exit codes: 0 success; 1 problems found (invalid rules, failing tests, lint findings, changed answers
for ``diff``, unformatted files for ``fmt --check``, rejected batch rows, a service that cannot
start); 2 bad usage or input (for ``diff``: the comparison could not be made). :data:`EXIT_CODES`
words them per command; docs/authoring.md, "Output formats and exit codes", lists them.
"""
from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from engine.worklists.batch import Backend, answer_orders, run as run_batch
from engine.loading.bundle import BundleError, build as build_bundle, covreq_version
from engine.authoring.diff import run as run_diff
from engine.errors import LoadError, Problem, RequestError
from engine.authoring.fmt import run as run_fmt
from engine.authoring.lint import run as run_lint
from engine.loading.loader import read_tree
from engine.authoring.report import FORMATS, Finding, checks_by_file, write_findings, write_problems
from engine.resources import schema_path
from engine.publishing.palist import PaListError, pa_list
from engine.publishing.palist_output import PA_LIST_FORMATS, render_pa_list
from engine.evaluation.ruleset import RuleSet, load
from engine.authoring.testcases import iter_test_files, read_file, rule_tree_of
from engine.authoring.testcmd import run as run_test_command
from engine.worklists.worklist import WorklistError

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
__version__ = covreq_version()


def _validate(args: argparse.Namespace) -> int:
    problems: list[Problem] = []
    policies = 0
    files: list[str] = []
    for path in args.paths:
        tree = read_tree(path)
        problems += tree.problems
        policies += len(tree.policies)
        files += tree.files
    findings = [Finding(p) for p in problems]
    write_findings(findings, args.format, sys.stdout, "covreq validate", checks_by_file(files, findings, "validate"))
    if args.format == "text":
        summary = (f"{len(problems)} problem(s) in {len(files)} file(s)" if problems
                   else f"ok: {policies} policy version(s) in {len(files)} file(s)")
        print(summary, file=sys.stderr)
    return EXIT_PROBLEMS if problems else EXIT_OK


def _load_or_report(path: str, fmt: str = "text") -> RuleSet | None:
    try:
        return load(path)
    except LoadError as exc:
        write_problems(exc.problems, fmt, sys.stdout if fmt != "text" else sys.stderr)
        return None


def _eval(args: argparse.Namespace) -> int:
    rules = _load_or_report(args.rules)
    if rules is None:
        return EXIT_PROBLEMS
    try:
        text = sys.stdin.read() if args.request == "-" else Path(args.request).read_text(encoding="utf-8")
        body = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"covreq eval: cannot read {args.request}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except json.JSONDecodeError as exc:
        print(f"covreq eval: {args.request}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}", file=sys.stderr)
        return EXIT_USAGE
    if args.explain and isinstance(body, dict):
        body["explain"] = True
    try:
        response = rules.evaluate(body)
    except RequestError as exc:
        print(f"covreq eval: invalid request: {exc}", file=sys.stderr)
        return EXIT_USAGE
    json.dump(response, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


def _test(args: argparse.Namespace) -> int:
    tree = args.rules or str(rule_tree_of(args.path))
    if args.rules is None and Path(tree) != Path(args.path):
        print(f"covreq test: testing against the rule tree {tree} (--rules chooses another)", file=sys.stderr)
    try:
        rules = load(tree)
    except LoadError as exc:  # the tests files' own problems are worth knowing at the same time
        tests_problems = [p for path in iter_test_files(args.path) for p in read_file(path)[1]]
        write_problems(sorted(exc.problems + tests_problems), args.format,
                       sys.stdout if args.format != "text" else sys.stderr)
        return EXIT_PROBLEMS
    return run_test_command(rules, args.path, args.format, sys.stdout, sys.stderr, args.min_coverage, args.coverage)


def _workers(text: str) -> int:
    """A number of Dask workers: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a number of workers is a whole number of at least 1, not {text!r}")
    return int(text)


def _batch_backend(args: argparse.Namespace) -> Backend:
    """This process, or a Dask cluster (imported only then: Dask is an optional extra)."""
    tls = (args.dask_tls_ca_file, args.dask_tls_cert, args.dask_tls_key)
    if any(tls) and not (args.dask_tls_ca_file and args.dask_tls_cert and args.dask_scheduler):
        raise WorklistError("--dask-tls-ca-file and --dask-tls-cert (and --dask-tls-key) go together, "
                            "with --dask-scheduler tls://HOST:PORT")
    if args.dask_workers is None and args.dask_scheduler is None:
        if args.partitioned_by_order:
            raise WorklistError("--partitioned-by-order goes with --dask-workers or --dask-scheduler")
        return answer_orders
    try:
        from dask_batch import DaskBackend, Tls
    except ImportError as exc:
        raise WorklistError(f"--dask-workers and --dask-scheduler need Dask ({exc.name} is missing): "
                            "pip install 'covreq[dask]'") from None
    return DaskBackend(args.dask_workers, args.dask_scheduler, tls=Tls(*tls) if any(tls) else None,
                       partitioned_by_order=args.partitioned_by_order)


def _batch(args: argparse.Namespace) -> int:
    rules = _load_or_report(args.rules)
    if rules is None:
        return EXIT_PROBLEMS
    try:
        summary = run_batch(rules, args.orders, args.output, sys.stderr, _batch_backend(args))
    except (WorklistError, BundleError) as exc:
        print(f"covreq batch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_PROBLEMS if summary.rejected or summary.failed else EXIT_OK


def _bundle(args: argparse.Namespace) -> int:
    rules = _load_or_report(args.path)
    if rules is None:
        return EXIT_PROBLEMS
    try:
        key = Path(args.signing_key).read_bytes() if args.signing_key else None
        data, manifest = build_bundle(Path(args.path), key, args.key_id)
        Path(args.output).write_bytes(data)
    except (OSError, BundleError) as exc:
        print(f"covreq bundle: {exc}", file=sys.stderr)
        return EXIT_USAGE
    signed = f", signed{f' (kid {args.key_id})' if args.key_id else ''}" if key else ", unsigned"
    print(f"{args.output}: sha256 {manifest.digest} (rule set {manifest.ruleset}), {manifest.files} file(s), "
          f"covreq {manifest.covreq}{signed}")
    return EXIT_OK


def _lint(args: argparse.Namespace) -> int:
    return run_lint(args.paths, args.format, sys.stdout, sys.stderr, args.today, args.fail_on)


def _diff(args: argparse.Namespace) -> int:
    return run_diff(args.old, args.new, args.requests, args.format, sys.stdout, sys.stderr, args.git, args.path)


def _fmt(args: argparse.Namespace) -> int:
    return run_fmt(args.paths, args.check or args.diff, sys.stdout, sys.stderr, args.diff)


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_path(f"{args.kind}.schema.json").read_text(encoding="utf-8"))
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from service.server import StartupError, run  # imported lazily: the library works without the web stack

    if args.rules is None and args.bundle is None and not (os.environ.get("COVREQ_RULES")
                                                           or os.environ.get("COVREQ_BUNDLE_URL")):
        print("covreq serve: give --rules PATH or --bundle URL, or set COVREQ_RULES or COVREQ_BUNDLE_URL",
              file=sys.stderr)
        return EXIT_USAGE

    for variable, value in (("COVREQ_BUNDLE_URL", args.bundle), ("COVREQ_BUNDLE_PUBLIC_KEY", args.bundle_key),
                            ("COVREQ_BUNDLE_POLL_SECONDS", args.bundle_poll),
                            ("COVREQ_MAX_CONNECTIONS", args.max_connections),
                            ("COVREQ_REQUEST_TIMEOUT", args.request_timeout),
                            ("COVREQ_KEEP_ALIVE_TIMEOUT", args.keep_alive_timeout),
                            ("COVREQ_MAX_HEADER_BYTES", args.max_header_bytes),
                            ("COVREQ_STRICT_AUDIT", "1" if args.strict_audit else None),
                            ("COVREQ_SHUTDOWN_SECONDS", args.shutdown_seconds),
                            ("COVREQ_SSL_CERTFILE", args.ssl_certfile), ("COVREQ_SSL_KEYFILE", args.ssl_keyfile),
                            ("COVREQ_SSL_CA_CERTS", args.ssl_ca_certs),
                            ("COVREQ_SSL_CLIENT_CERT", args.ssl_client_cert)):
        if value is not None:
            os.environ[variable] = str(value)
    try:
        run(args.rules, args.host, args.port, args.workers)
    except StartupError as exc:
        print(f"covreq serve: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


def _report_pa_list(args: argparse.Namespace) -> int:
    rules = _load_or_report(args.rules)
    if rules is None:
        return EXIT_PROBLEMS
    try:
        listing = pa_list(rules, args.payer, args.date, args.plan)
    except PaListError as exc:
        print(f"covreq report pa-list: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(render_pa_list(listing, args.format))
    return EXIT_OK


def _report_pa_metrics(args: argparse.Namespace) -> int:
    from service.pas.metrics_cli import write_pa_metrics  # imported lazily: the library works without the database stack

    return write_pa_metrics(args.database, getattr(args, "from"), args.to, args.format)


def _hash_key(args: argparse.Namespace) -> int:
    from service.api_keys import hash_key  # no web stack needed

    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.name):
        print(f"covreq hash-key: a key name is letters, digits, '.', '_' and '-', not {args.name!r}", file=sys.stderr)
        return EXIT_USAGE
    key = getpass.getpass("API key (not shown): ") if sys.stdin.isatty() else sys.stdin.read()
    key = key.removesuffix("\n").removesuffix("\r")
    try:
        hashed = hash_key(key)
    except ValueError as exc:
        print(f"covreq hash-key: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.name}: {hashed}" if args.name else hashed)
    return EXIT_OK


#: What each command's exit codes mean (shown under ``covreq COMMAND --help``; docs/authoring.md).
EXIT_CODES: dict[str, tuple[str, str, str]] = {
    "validate": ("no problem", "a problem in a rule tree", "bad usage"),
    "eval": ("answered", "the rule tree does not load", "bad usage, or the request is not readable JSON or breaks the v1 contract"),
    "test": ("every case passed and coverage reached --min-coverage",
             "a case failed, a tests file is malformed, no case was found, coverage is below the minimum, or the tree does not load",
             "bad usage"),
    "batch": ("every row answered", "rows were rejected, or the tree does not load", "bad usage, or the worklist cannot be read"),
    "bundle": ("bundle written", "the tree does not load", "bad usage, or the bundle cannot be written or signed"),
    "lint": ("no finding at or above --fail-on", "such a finding", "bad usage"),
    "diff": ("no answer changes", "some answers change", "the comparison could not be made"),
    "fmt": ("every file in normal form (or rewritten)", "--check: a file is not in normal form", "a file cannot be parsed"),
    "schema": ("schema printed", "(not used)", "bad usage"),
    "serve": ("stopped", "cannot start: the rule tree, the settings or the address are unusable", "bad usage"),
    "report": ("report written", "the rule tree does not load, or the database cannot be read",
               "bad usage, or a payer or plan the rules do not know, or a period that ends before it starts"),
    "hash-key": ("hash printed", "(not used)", "bad usage, or the key is too short or not one word of printable ASCII"),
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default (when it has one worth showing) and keeps the epilog's lines."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str,
             summary: str) -> argparse.ArgumentParser:
    ok, problems, usage = EXIT_CODES[name]
    return commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                               formatter_class=_HelpFormatter,
                               epilog=f"exit codes:\n  0  {ok}\n  1  {problems}\n  2  {usage}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``covreq`` command."""
    parser = argparse.ArgumentParser(prog="covreq", description="Rules-as-code coverage requirements.",
                                     formatter_class=_HelpFormatter,
                                     epilog="`covreq COMMAND --help` describes a command and its exit codes.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rules_help = "the rule tree (a folder of policy files, or one file)"

    validate = _command(commands, "validate", "check rule trees: schema, conditions, codes and dates")
    validate.add_argument("paths", nargs="+", metavar="PATH", help=rules_help)
    validate.add_argument("--format", choices=FORMATS, default="text", help="output format")
    validate.set_defaults(run=_validate)

    evaluate = _command(commands, "eval", "answer a v1 request and print the v1 response")
    evaluate.add_argument("--rules", required=True, metavar="PATH", help=rules_help)
    evaluate.add_argument("request", nargs="?", default="-", metavar="REQUEST.json",
                          help="the request, a JSON file; - or nothing reads standard input")
    evaluate.add_argument("--explain", action="store_true", help="include the rule trace")
    evaluate.set_defaults(run=_eval)

    test = _command(commands, "test", "run the *.tests.yaml cases of a folder, a tests file or a policy file")
    test.add_argument("path", metavar="PATH", help="a folder, a tests file, or a policy file (its x.tests.yaml runs)")
    test.add_argument("--rules", metavar="RULES",
                      help="rule tree to test against (default: the tree PATH belongs to, found from its payer folder)")
    test.add_argument("--format", choices=FORMATS, default="text", help="output format")
    test.add_argument("--coverage", action="store_true", help="list the rules and branches no case exercised")
    test.add_argument("--min-coverage", type=float, metavar="N", help="fail when coverage is below N percent")
    test.set_defaults(run=_test)

    batch = _command(commands, "batch", "answer a worklist of orders (CSV, JSONL or Parquet), one row per service line")
    batch.add_argument("--rules", required=True, metavar="PATH", help=rules_help)
    batch.add_argument("orders", metavar="ORDERS.csv|ORDERS.jsonl|ORDERS.parquet|DATASET/",
                       help="the worklist; its suffix gives its format; a folder, a glob or a URL of Parquet files "
                            "is a dataset (docs/lookup.md)")
    batch.add_argument("-o", "--output", required=True, metavar="OUT.csv|OUT.jsonl|OUT.parquet|FOLDER/",
                       help="the answers; its suffix gives its format; a name ending in / is a Parquet dataset "
                            "(written by the workers on Dask)")
    cluster = batch.add_mutually_exclusive_group()
    cluster.add_argument("--dask-workers", type=_workers, metavar="N", help="answer on a local Dask cluster of N workers")
    cluster.add_argument("--dask-scheduler", metavar="ADDRESS",
                         help="answer on the Dask cluster at ADDRESS (tls://host:8786, or tcp:// on a trusted network)")
    batch.add_argument("--partitioned-by-order", action="store_true",
                       help="on Dask: each file of the Parquet dataset holds whole orders, so its rows are not "
                            "shuffled by order_id (checked: an order found in two files is rejected)")
    batch.add_argument("--dask-tls-ca-file", metavar="CA.pem", help="TLS to the Dask cluster: its CA certificate")
    batch.add_argument("--dask-tls-cert", metavar="CERT.pem", help="TLS to the Dask cluster: this client's certificate")
    batch.add_argument("--dask-tls-key", metavar="KEY.pem",
                       help="TLS to the Dask cluster: this client's private key, when not in CERT.pem")
    batch.set_defaults(run=_batch)

    bundle = _command(commands, "bundle", "pack a valid rule tree as a bundle for `covreq serve --bundle`")
    bundle.add_argument("path", metavar="PATH", help=rules_help)
    bundle.add_argument("-o", "--output", required=True, metavar="BUNDLE.tar.gz", help="the bundle to write")
    bundle.add_argument("--signing-key", metavar="KEY.pem", help="sign with this PEM private key (RSA, EC or Ed25519)")
    bundle.add_argument("--key-id", metavar="KID", help="the key id written into the signature's header")
    bundle.set_defaults(run=_bundle)

    lint = _command(commands, "lint", "static analysis of rule trees (conflicts, dead rules, gaps ...)")
    lint.add_argument("paths", nargs="+", metavar="PATH", help=rules_help)
    lint.add_argument("--format", choices=FORMATS, default="text", help="output format")
    lint.add_argument("--today", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                      help="the date expiry is judged against (default: today)")
    lint.add_argument("--fail-on", choices=("error", "warning", "notice"), default="warning",
                      help="exit 1 when a finding is at least this severe")
    lint.set_defaults(run=_lint)

    diff = _command(commands, "diff", "answers that change between two rule trees or two git revisions")
    diff.add_argument("old", nargs="?", metavar="OLD", help="the rule tree before the change")
    diff.add_argument("new", nargs="?", metavar="NEW", help="the rule tree after the change")
    diff.add_argument("--requests", required=True, metavar="FILE.jsonl", help="v1 requests, one JSON per line")
    diff.add_argument("--git", metavar="REV1..REV2", help="compare two git revisions instead of OLD and NEW")
    diff.add_argument("--path", default="rules", help="the rule tree inside the repository (with --git)")
    diff.add_argument("--format", choices=("text", "json", "markdown"), default="text", help="output format")
    diff.set_defaults(run=_diff)

    fmt = _command(commands, "fmt", "rewrite policy files in normal form (comments kept)")
    fmt.add_argument("paths", nargs="+", metavar="PATH", help="policy files or folders of them")
    fmt.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is not in normal form")
    fmt.add_argument("--diff", action="store_true", help="change nothing; show each change as a unified diff (implies --check)")
    fmt.set_defaults(run=_fmt)

    schema = _command(commands, "schema", "print the JSON Schema of policy, payer or tests files")
    schema.add_argument("kind", nargs="?", choices=("policy", "payer", "tests"), default="policy",
                        help="which files (default: policy)")
    schema.set_defaults(run=_schema)

    serve = _command(commands, "serve", "run the HTTP service (settings: COVREQ_* variables, docs/operations.md)")
    source = serve.add_mutually_exclusive_group()  # or from the environment: a container image sets them
    source.add_argument("--rules", metavar="PATH", help="serve this rule tree (default: $COVREQ_RULES)")
    source.add_argument("--bundle", metavar="URL", help="serve the rule bundle at this http(s) URL, polled for "
                                                        "changes (default: $COVREQ_BUNDLE_URL, which wins over COVREQ_RULES)")
    serve.add_argument("--bundle-key", metavar="PUBLIC.pem", help="require bundles signed by this key's private half")
    serve.add_argument("--bundle-poll", type=float, metavar="SECONDS", help="how often the bundle URL is checked (default: 30)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="worker processes, each with its own copy of the rules")
    serve.add_argument("--max-connections", type=int, metavar="N",
                       help="open connections per process; past it the oldest idle one is closed, or the request gets 503 (default: 1000)")
    serve.add_argument("--request-timeout", type=float, metavar="SECONDS",
                       help="time a connection has to send a whole request, headers and body (default: 30)")
    serve.add_argument("--keep-alive-timeout", type=float, metavar="SECONDS",
                       help="time an idle connection is kept open (default: 5)")
    serve.add_argument("--max-header-bytes", type=int, metavar="BYTES",
                       help="largest request line and headers; larger is a 400 (default: 16384)")
    serve.add_argument("--strict-audit", action="store_true",
                       help="refuse (503) a decision whose audit record cannot be written")
    serve.add_argument("--shutdown-seconds", type=float, metavar="SECONDS",
                       help="on SIGTERM, time the requests under way get to finish (default: 20)")
    serve.add_argument("--ssl-certfile", metavar="CERT.pem",
                       help="serve HTTPS with this PEM certificate chain, reloaded on SIGHUP (default: $COVREQ_SSL_CERTFILE)")
    serve.add_argument("--ssl-keyfile", metavar="KEY.pem", help="the certificate's unencrypted PEM private key")
    serve.add_argument("--ssl-ca-certs", metavar="CA.pem", help="verify client certificates signed by these CAs (mutual TLS)")
    serve.add_argument("--ssl-client-cert", choices=("none", "optional", "required"),
                       help="ask for a client certificate (default: required with --ssl-ca-certs, else none)")
    serve.set_defaults(run=_serve)

    report = _command(commands, "report", "reports payers publish (CMS-0057-F), made from the rules")
    reports = report.add_subparsers(dest="report", required=True, metavar="REPORT", help="the report to write")
    listing = reports.add_parser("pa-list", formatter_class=_HelpFormatter, epilog=report.epilog,
                                 help="the items and services that need prior authorization on a date",
                                 description="The items and services that need prior authorization on a date, "
                                             "with the conditions and settings that decide it (docs/pa-list.md).")
    listing.add_argument("--rules", required=True, metavar="PATH", help=rules_help)
    listing.add_argument("--payer", required=True, help="the payer id")
    listing.add_argument("--plan", help="the plan id (default: the policies of every plan, without plan overrides)")
    listing.add_argument("--date", required=True, type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                         help="the date of service the list is for")
    listing.add_argument("--format", choices=PA_LIST_FORMATS, default="csv", help="output format")
    listing.set_defaults(run=_report_pa_list)
    metrics = reports.add_parser("pa-metrics", formatter_class=_HelpFormatter, epilog=report.epilog,
                                 help="the prior-authorization metrics CMS-0057-F requires, from the stored decisions",
                                 description="The prior-authorization metrics payers publish (CMS-0057-F, 42 CFR "
                                             "422.122(c)), from the PAS decisions in covreq's database (docs/pas.md).")
    metrics.add_argument("--database", required=True, metavar="URL",
                         help="the database (sqlite:///PATH or postgresql://...), as COVREQ_DATABASE_URL names it")
    metrics.add_argument("--from", required=True, type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                         help="first day of the period (requests received from this day)")
    metrics.add_argument("--to", required=True, type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                         help="last day of the period (inclusive)")
    metrics.add_argument("--format", choices=("text", "json", "csv"), default="text", help="output format")
    metrics.set_defaults(run=_report_pa_metrics)

    hashing = _command(commands, "hash-key", "print the line of the API key file (COVREQ_API_KEYS) "
                                             "for a key read from standard input")
    hashing.add_argument("name", nargs="?", metavar="NAME",
                         help="the caller's name, recorded in the audit trail; printed as `NAME: sha256:...`")
    hashing.set_defaults(run=_hash_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``covreq`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))

