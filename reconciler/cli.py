"""Command-line entry point: argparse, and the boundary that turns errors into exit codes.

Each command lives in `reconciler.commands.<name>` with a `run(config) -> int`, where
`config` is the command's typed configuration (`reconciler.config`): argparse stops here.
Modules are imported lazily so `reconciler --help` and `reconciler validate` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from reconciler import __version__, collector, config
from reconciler.errors import ReconcilerError

DEFAULT_PATHS = ["deployments/"]

DESCRIPTION = """\
Declarative reconciler for QuantConnect live deployments.

Manifests (YAML) describe the live algorithms that should run; the reconciler
validates them, plans the difference with what it recorded and with what is live,
and creates what is missing -- exactly once, never touching what it does not own.

typical use:
  reconciler validate                 check deployments/ (what CI runs on every pull request)
  reconciler plan                     show what apply would do
  reconciler apply                    do it (asks first on a terminal; --yes in CI)
  reconciler apply --sandbox          the same against an embedded emulator, no account needed

credentials come from the environment only: QC_USER_ID and QC_API_TOKEN.
exit codes: 0 success or no changes, 1 any error, 2 changes (plan --detailed-exitcode).
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {value}")
    return value


def _listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT`, or a bare `PORT` (127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return "127.0.0.1", _port(text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"put an IPv6 address in brackets: [{host}]:{port}")
    if not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or PORT, got {text!r}")
    return host, _port(port)


def _loopback_port(text: str) -> tuple[str, int]:
    return "127.0.0.1", _port(text)


_Command = Callable[..., argparse.ArgumentParser]  # adds a subcommand, returns its parser


def _add_notify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--notify",
        action="append",
        metavar="URL",
        help="POST a JSON event per outcome, drift, block, conflict or failure to URL "
        "(Slack's format for hooks.slack.com); repeatable (env RECONCILER_NOTIFY, "
        "separated by spaces or commas). Plain http:// only to loopback.",
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more seconds, got {text}")
    return value


def _add_globals(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Global options, accepted before or after the command name.

    On subcommands their default is SUPPRESS so a value given before the command name
    is not overwritten by the subcommand's default.
    """
    default_url = argparse.SUPPRESS if suppress else os.environ.get("QC_API_URL")
    default_state = argparse.SUPPRESS if suppress else os.environ.get("RECONCILER_STATE")
    parser.add_argument(
        "--api-url",
        metavar="URL",
        default=default_url,
        help="QuantConnect API base URL (env QC_API_URL; default "
        "https://www.quantconnect.com/api/v2). Plain http:// only to loopback.",
    )
    parser.add_argument(
        "--state",
        metavar="PATH|URL",
        default=default_state,
        help="state: a SQLite file or a postgresql:// URL (env RECONCILER_STATE; default "
        ".reconciler/state.db)",
    )
    parser.add_argument(
        "--api-timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=argparse.SUPPRESS if suppress else os.environ.get("RECONCILER_API_TIMEOUT"),
        help="how long an API call's answer is awaited (env RECONCILER_API_TIMEOUT; default "
        "30; connecting: at most 10). After a crash, a project whose create may still land "
        "waits about 4x this plus the connect time before it is planned again",
    )
    parser.add_argument(
        "--workspace",
        metavar="NAME",
        default=argparse.SUPPRESS if suppress else os.environ.get("RECONCILER_WORKSPACE"),
        help="the workspace in a PostgreSQL state: manifest repositories sharing one database "
        "each use their own (env RECONCILER_WORKSPACE; default 'default')",
    )


def _add_paths(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="manifest files or directories, searched recursively for *.yaml/*.yml; "
        "'-' reads standard input (default: deployments/)",
    )


def _add_sandbox(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="run against an embedded emulator (state in .reconciler/sandbox/); "
        "no credentials needed",
    )


def _add_git(parser: argparse.ArgumentParser, *, daemon: bool) -> None:
    """Where the manifests come from when not from the local disk (DESIGN §15)."""
    group = parser.add_argument_group(
        "git source",
        "read the manifests from a repository at one commit instead of the local disk; "
        "PATHs are then paths inside the repository",
    )
    group.add_argument(
        "--git",
        metavar="URL",
        help="the repository: https://, ssh (git@host:org/repo.git) or file://; an HTTPS "
        "token goes in RECONCILER_GIT_TOKEN, never in the URL (plain http:// and git:// "
        "only to loopback); a bare mirror is kept under .reconciler/git/ "
        "(env RECONCILER_GIT_CACHE)",
    )
    group.add_argument(
        "--ref", metavar="REF", help="the branch or ref to follow (default: the remote's HEAD)"
    )
    if daemon:
        group.add_argument(
            "--interval",
            type=_positive_float,
            default=60.0,
            metavar="SECONDS",
            help="fetch every SECONDS (default 60); a webhook (--hooks-listen) fetches at once",
        )
        group.add_argument(
            "--hooks-listen",
            type=_listen,
            metavar="HOST:PORT",
            help="serve POST /hooks/github and /hooks/gitlab on a listener of their own "
            "(nothing else is served there); needs --hook-secret-file or "
            "RECONCILER_HOOK_SECRET",
        )
        group.add_argument(
            "--hook-secret-file",
            metavar="FILE",
            help="the webhook secret (GitHub's signing secret, GitLab's token), read from FILE",
        )
    else:
        group.add_argument(
            "--revision",
            metavar="SHA",
            help="read this commit instead of the ref's newest (it must be in the repository)",
        )
    group.add_argument(
        "--verify-signatures",
        metavar="ALLOWED_SIGNERS",
        help="apply only commits carrying an SSH signature by a key of this allowed-signers "
        "file (git's gpg.ssh.allowedSignersFile format); others are refused",
    )


def _add_state_command(command: _Command) -> None:
    """`reconciler state list|show|history|forget|unlock|copy` (DESIGN §12)."""
    state = command(
        "state",
        "Inspect and manage recorded state, like `terraform state`.",
        "examples:\n"
        "  reconciler state list\n"
        "  reconciler state history spy-momentum\n"
        "  reconciler state forget spy-momentum      # stop managing it; it keeps running\n"
        "  reconciler state unlock                   # after a runner died holding the lock\n"
        "  reconciler state copy --to postgresql://ci@db.internal:5432/reconciler "
        "--workspace prod\n",
    )
    subcommands = state.add_subparsers(dest="state_command", metavar="SUBCOMMAND", required=True)

    def sub(name: str, summary: str) -> argparse.ArgumentParser:
        parser = subcommands.add_parser(name, help=summary, description=summary)
        _add_globals(parser, suppress=True)
        parser.add_argument("--format", choices=["text", "json"], default="text")
        _add_sandbox(parser)
        return parser

    sub("list", "Recorded deployments: name, project, deployment, ownership, last action.")
    sub("show", "Everything recorded about one deployment.").add_argument("name", metavar="NAME")
    history = sub("history", "Actions and their outcomes, oldest first (of NAME, if given).")
    history.add_argument("name", metavar="NAME", nargs="?")
    history.add_argument(
        "--limit", type=_positive_int, default=50, metavar="N", help="the last N (default 50)"
    )
    sub(
        "forget", "Drop a record: the deployment keeps running, and is no longer managed."
    ).add_argument("name", metavar="NAME")
    sub(
        "unlock",
        "Free the apply lock of a runner that died or lost its network: shows the holder, "
        "refuses while it is alive (unless --force), checks the lock is free afterwards.",
    ).add_argument("--force", action="store_true", help="free it even if the holder looks alive")
    copy = sub("copy", "Copy records, open intents, history and applied plans to another state.")
    copy.add_argument(
        "--to", required=True, metavar="URL|PATH", help="the target: postgresql:// or a file"
    )
    copy.add_argument(
        "--to-workspace",
        metavar="NAME",
        help="the target workspace for a copy between PostgreSQL states (default: --workspace)",
    )
    copy.add_argument(
        "--force", action="store_true", help="replace what the target workspace already holds"
    )


def _validate_command(command: _Command) -> None:
    validate = command(
        "validate",
        "Check manifests against the schema and the cross-file rules, offline.",
        "examples:\n"
        "  reconciler validate\n"
        "  reconciler validate deployments/ other/ --format github   # in GitHub Actions\n"
        "  cat m.yaml | reconciler validate -\n"
        "exit status: 0 when every manifest is valid, 1 otherwise.",
    )
    _add_paths(validate)
    validate.add_argument("--format", choices=["text", "json", "github"], default="text")
    validate.add_argument(
        "--check-secrets",
        action="store_true",
        help="also check that every referenced env var / file exists (values never printed)",
    )


def _plan_command(command: _Command) -> None:
    plan = command(
        "plan",
        "Show what apply would change: + create, ~ replace, - prune, ! conflict.",
        "examples:\n"
        "  reconciler plan\n"
        "  reconciler plan --out plan.json && reconciler apply --plan plan.json --yes\n"
        "  reconciler plan --detailed-exitcode   # 0 no changes, 1 error, 2 changes\n",
    )
    _add_paths(plan)
    plan.add_argument(
        "--format",
        choices=["text", "json", "markdown"],
        default="text",
        help="markdown: for a pull-request comment or a CI job summary",
    )
    plan.add_argument("--out", metavar="FILE", help="save the plan for `apply --plan FILE`")
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when the plan has changes (0 none, 1 error)",
    )
    _add_sandbox(plan)
    _add_git(plan, daemon=False)


def _apply_command(command: _Command) -> None:
    apply = command(
        "apply",
        "Make live deployments match the manifests: create, replace, and (with --prune) prune.",
        "Every create, stop and liquidate is journaled before it is sent; a call whose\n"
        "outcome is unknown (timeout, dropped connection, 5xx) is verified against live\n"
        "state, never blindly re-sent. Every stop comes before any create; a replace\n"
        "creates only once live state shows that the old deployment no longer runs.\n\n"
        "examples:\n"
        "  reconciler apply                      # shows the plan, asks on a terminal\n"
        "  reconciler apply --yes                # CI: no prompt\n"
        "  reconciler apply --plan plan.json --yes\n"
        "  reconciler apply --replace spy-momentum   # redeploy an in-sync one (new credentials)\n"
        "  reconciler apply --prune              # also stop what was removed from the manifests\n"
        "  reconciler apply --sandbox --yes      # against the embedded emulator\n",
    )
    _add_paths(apply)
    apply.add_argument("--plan", metavar="FILE", help="apply exactly this saved plan")
    apply.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    apply.add_argument(
        "--concurrency",
        type=_positive_int,
        default=8,
        metavar="N",
        help="API calls (creates, stops) in flight at once (default 8)",
    )
    apply.add_argument(
        "--prune",
        action="store_true",
        help="stop deployments this reconciler created whose manifest was removed (by their "
        "onDelete: stop or liquidate); without it they are reported as pending",
    )
    apply.add_argument(
        "--max-prunes",
        type=_positive_int,
        default=5,
        metavar="N",
        help="refuse every prune when more than N are planned (default 5)",
    )
    apply.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="NAME",
        help="replace this deployment although it is in sync, e.g. after rotating its "
        "credentials (repeatable)",
    )
    apply.add_argument(
        "--restart",
        action="append",
        default=[],
        metavar="NAME",
        help="start this deployment again although its restartPolicy leaves it stopped (a "
        "person's stop, a completion) or it is backing off (repeatable; nothing to do when "
        "it runs)",
    )
    apply.add_argument(
        "--ignore-window",
        action="append",
        default=[],
        metavar="NAME",
        help="carry out this deployment's replace or prune now although its deploy window "
        "is closed (refused when the window says override: denied; recorded in history; "
        "repeatable)",
    )
    apply.add_argument(
        "--wait",
        type=_seconds,
        default=120.0,
        metavar="SECONDS",
        help="after starting deployments, wait until each is Running; one that fails "
        "(e.g. a brokerage login) or is still starting after SECONDS fails the apply "
        "(default 120; 0 skips)",
    )
    apply.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="json: only the outcomes, as JSON, on stdout (the plan and progress on stderr)",
    )
    _add_notify(apply)
    _add_sandbox(apply)
    _add_git(apply, daemon=False)


def _status_command(command: _Command) -> None:
    status = command(
        "status",
        "Show recorded deployments with their live status and last action.",
    )
    status.add_argument("--format", choices=["text", "json"], default="text")
    _add_sandbox(status)


def _watch_command(command: _Command) -> None:
    watch = command(
        "watch",
        "Reconcile continuously: on every manifest change and every --resync seconds.",
    )
    _add_paths(watch)
    watch.add_argument(
        "--resync",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="full reconcile interval to notice drift (default 60)",
    )
    watch.add_argument(
        "--prune",
        action="store_true",
        help="stop deployments this reconciler created whose manifest was removed; never "
        "while any manifest file is invalid (default: report them as pending)",
    )
    watch.add_argument(
        "--prune-grace",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="with --prune: prune a removal only once it has lasted SECONDS, so that a "
        "rename or a checkout in progress stops nothing (default 10)",
    )
    watch.add_argument(
        "--listen",
        type=_listen,
        metavar="HOST:PORT",
        help="serve /healthz and Prometheus /metrics on HOST:PORT (a bare PORT means "
        "127.0.0.1:PORT; 0.0.0.0:PORT for every interface, [::1]:PORT for IPv6)",
    )
    watch.add_argument(
        "--metrics-port",
        dest="listen",
        type=_loopback_port,
        metavar="PORT",
        help="the same as --listen 127.0.0.1:PORT",
    )
    _add_notify(watch)
    watch.add_argument(
        "--lease",
        type=_positive_float,
        default=os.environ.get("RECONCILER_LEASE") or "10",  # a string: checked by `type`
        metavar="SECONDS",
        help="with a PostgreSQL state: the leader's lease; daemons on one workspace elect one "
        "leader, the others stand by and take over within twice the lease (env "
        "RECONCILER_LEASE; default 10)",
    )
    watch.add_argument("--log-format", choices=["text", "json"], default="text")
    _add_sandbox(watch)
    _add_git(watch, daemon=True)


def _promotion_command(command: _Command) -> None:
    """`reconciler promotion status|approve|reject` (DESIGN §17)."""
    promotion = command(
        "promotion",
        "Paper first: the candidates offered to live deployments with spec.promotion, "
        "their soak on paper and verdicts; approve or reject one.",
        "examples:\n"
        "  reconciler promotion status\n"
        "  reconciler promotion status spy-momentum-live --format json\n"
        "  reconciler promotion approve spy-momentum-live   # approval: manual\n"
        "  reconciler promotion reject spy-momentum-live    # never promoted; waits for new "
        "paper code\n",
    )
    subcommands = promotion.add_subparsers(
        dest="promotion_command", metavar="SUBCOMMAND", required=True
    )

    def sub(name: str, summary: str) -> argparse.ArgumentParser:
        parser = subcommands.add_parser(name, help=summary, description=summary)
        _add_globals(parser, suppress=True)
        _add_sandbox(parser)
        return parser

    status = sub(
        "status",
        "Each promoted deployment: its candidate (the paper code's digest), verdict, since "
        "when, samples, max drawdown, why, and the code the live deployment runs.",
    )
    status.add_argument("name", metavar="NAME", nargs="?")
    status.add_argument("--format", choices=["text", "json"], default="text")
    sub(
        "approve",
        "Approve the passed candidate of NAME (approval: manual): the next apply or "
        "reconcile promotes it.",
    ).add_argument("name", metavar="NAME")
    sub(
        "reject",
        "Reject the candidate of NAME: it is never promoted, even if its code comes back; "
        "NAME waits for new paper code.",
    ).add_argument("name", metavar="NAME")


def _windows_command(command: _Command) -> None:
    windows = command(
        "windows",
        "Show each deploy window: open or closed now, its next opening and closing, and "
        "the deployments that use it.",
        "examples:\n  reconciler windows\n  reconciler windows deployments/ --format json\n",
    )
    _add_paths(windows)
    windows.add_argument("--format", choices=["text", "json"], default="text")
    _add_git(windows, daemon=False)


def _emulator_command(command: _Command) -> None:
    emulator = command(
        "emulator",
        "Serve a local QuantConnect API v2 emulator (for rehearsals, tests, benchmarks).",
        "It accepts exactly QC_USER_ID / QC_API_TOKEN when both are set, otherwise it\n"
        "generates a pair and prints them. Stop it with Ctrl-C (exit 0).\n\n"
        "examples:\n"
        "  reconciler emulator --port 8765 --seed seed.yaml --data .emulator/\n\n"
        "  # rehearse day 2 in the sandbox: change its world, then run apply --sandbox\n"
        '  reconciler emulator --sandbox --admin \'live/end:{"projectId": 1001, '
        '"status": "Stopped"}\'\n'
        "  reconciler emulator --sandbox --admin 'live/kill:{\"projectId\": 1001}'\n"
        "  reconciler emulator --sandbox --admin 'projects/touch:{\"projectId\": 1001}'\n"
        "  reconciler emulator --sandbox --admin "
        '\'projects/update:{"projectId": 1001, "failLogin": true}\'\n'
        "  # rehearse paper first: new code on the paper project, its twin, a drawdown\n"
        "  reconciler emulator --sandbox --admin "
        '\'projects/files:{"projectId": 1001, "files": {"main.py": "# v2"}}\'\n'
        "  reconciler emulator --sandbox --admin "
        '\'projects/files:{"projectId": 2002, "copyFrom": 1001}\'\n'
        "  reconciler emulator --sandbox --admin "
        '\'live/equity:{"projectId": 1001, "equity": 93000}\'\n',
    )
    emulator.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    emulator.add_argument("--port", type=_port, default=0, help="port (default 0: any free one)")
    emulator.add_argument("--seed", metavar="FILE", help="YAML/JSON seed of projects, nodes...")
    emulator.add_argument("--data", metavar="DIR", help="persist state in DIR (default memory)")
    emulator.add_argument(
        "--compile-delay",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="time a compile stays InQueue before BuildSuccess (default 1.0)",
    )
    emulator.add_argument(
        "--startup-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="time a new deployment spends InQueue, then LoggingIn, before Running "
        "(default 0: Running at once)",
    )
    emulator.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. 'live/create:latency=0.05' or "
        "'live/create:fail=2,status=500' or 'live/create:drop=1' (repeatable)",
    )
    emulator.add_argument(
        "--admin",
        action="append",
        default=[],
        metavar="ACTION:JSON",
        help="do an admin action on the persisted world (--data DIR or --sandbox) and exit "
        "without serving: live/end, live/kill, live/equity, projects/touch, projects/update, "
        "projects/files, seed (repeatable)",
    )
    emulator.add_argument(
        "--sandbox",
        action="store_true",
        help="with --admin: change the world of `--sandbox` runs (.reconciler/sandbox/)",
    )


# name -> what adds it, in the order `reconciler --help` lists them.
_COMMANDS: dict[str, Callable[[_Command], None]] = {
    "validate": _validate_command,
    "plan": _plan_command,
    "apply": _apply_command,
    "status": _status_command,
    "watch": _watch_command,
    "state": _add_state_command,
    "windows": _windows_command,
    "promotion": _promotion_command,
    "emulator": _emulator_command,
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `only`, the parser of that one command alone.

    `main` builds only the command it runs when the command line names it plainly: the
    others' hundred-odd arguments (each asks gettext for translations) are start-up time
    that `reconciler validate` in a pre-commit hook pays on every commit.
    """
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_globals(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str, epilog: str = "") -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_globals(sub, suppress=True)
        return sub

    for name, add in _COMMANDS.items():
        if only is None or name == only:
            add(command)
    return parser


def named_command(argv: Sequence[str]) -> str | None:
    """The command `argv` runs, when that is plain without parsing, else None.

    Plain: before the first word that is not an option, only the global options spelled
    out, each with its value (`--state plan apply` runs `apply`). `-h` or `--version` there
    (the top level's own help lists every command), an abbreviation or an unknown name:
    None, and the whole parser decides.
    """
    words = iter(argv)
    for word in words:
        if word in _GLOBAL_OPTIONS:
            next(words, None)  # its value, whatever it looks like
        elif not (word.startswith("--") and word.partition("=")[0] in _GLOBAL_OPTIONS):
            return word if word in _COMMANDS else None
    return None


# The global options, each of which takes a value.
_GLOBAL_OPTIONS = frozenset({"--api-url", "--api-timeout", "--state", "--workspace"})

# Options of the git source that mean nothing without --git.
_GIT_ONLY = ("ref", "revision", "verify_signatures", "hooks_listen", "hook_secret_file")


def _check_git_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not hasattr(args, "git"):
        return
    if args.git is None:
        given = [f"--{name.replace('_', '-')}" for name in _GIT_ONLY if getattr(args, name, None)]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            parser.error(f"{', '.join(given)} {verb} --git URL")
    elif getattr(args, "ref", None) and getattr(args, "revision", None):
        parser.error("--ref and --revision: give one (a revision is one commit of any ref)")
    if getattr(args, "hook_secret_file", None) and not getattr(args, "hooks_listen", None):
        parser.error("--hook-secret-file goes with --hooks-listen HOST:PORT")


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    with collector.paused():  # start-up: lasting objects only (see reconciler.collector)
        parser = build_parser(only=named_command(argv))
        args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if getattr(args, "paths", None) == []:
        args.paths = list(DEFAULT_PATHS)
    _check_git_flags(parser, args)
    try:
        with collector.paused():
            module = importlib.import_module(f"reconciler.commands.{args.command}")
        code: int = module.run(config.for_command(args.command, vars(args)))
        return code
    except ReconcilerError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` or similar: not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
